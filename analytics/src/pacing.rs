//! How the gateway's background threads (the event writer, the trace exporter) are scheduled
//! against the proxy's.
//!
//! At Linux's `SCHED_IDLE` a background thread runs only on CPU time no other thread wants, and
//! a proxy thread that wakes up takes the CPU from it at once. Scheduled like any other thread,
//! it takes the proxy's CPU even while another is free: at full load with one proxy worker on two
//! cores, the machine sat idle more with the store on than off, while the proxy lost a sixth of
//! its requests; with the event writer at `SCHED_IDLE` it used that idle time instead.
//!
//! An idle thread must not starve where no CPU is left over, though. A [`Pacer`], a thread of
//! its own that looks every [`CHECK_EVERY`], raises it to normal scheduling when its queue is
//! three quarters full (before it drops anything) or it has not finished a pass for
//! [`STALLED_AFTER`] (so it falls no further behind), and lowers it again once the queue is
//! nearly empty. Raising a thread out of `SCHED_IDLE` takes `CAP_SYS_NICE` or an `RLIMIT_NICE`
//! of at least 20; where the process has neither, `auto` keeps the thread at normal scheduling
//! rather than let it starve.

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use thread_priority::unix::ThreadId;

/// How a background thread is scheduled, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BackgroundPriority {
    /// [`BackgroundPriority::Idle`] where the thread can be raised again, normal elsewhere.
    #[default]
    Auto,
    /// `SCHED_IDLE`, raised to normal while it falls behind. Where it cannot be raised, it
    /// stays idle: on a machine with no CPU left over, its queue then drops what it is offered
    /// (counted) rather than slow the proxy.
    Idle,
    /// Scheduled like every other thread.
    Normal,
}

/// What a [`BackgroundPriority`] comes to in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Normal,
    /// Idle, with a [`Pacer`] to raise it.
    Paced,
    /// Idle for good.
    Idle,
}

impl BackgroundPriority {
    /// What this priority comes to for the thread called `what` (for the log).
    pub fn plan(self, what: &str) -> Plan {
        match (self, self != BackgroundPriority::Normal && can_leave_idle()) {
            (BackgroundPriority::Normal, _) | (BackgroundPriority::Auto, false) => Plan::Normal,
            (_, true) => Plan::Paced,
            (BackgroundPriority::Idle, false) => {
                tracing::warn!(
                    "{what} runs at SCHED_IDLE and cannot be raised when it falls behind (that takes \
                     CAP_SYS_NICE or an RLIMIT_NICE of 20): on a busy machine, its queue drops what it is offered"
                );
                Plan::Idle
            }
        }
    }
}

/// How often the pacer looks at its thread.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// A thread that has not finished a pass for this long is starved (the event writer passes every
/// 100 ms, and a pass that finds a backlog goes on until it has written it). Raising the writer
/// after 300 ms, on a benchmark at full load, raised it more than once a second and cost the
/// proxy 7–10% of its requests rather than 2–6%; the queue filling up is what raises it in time
/// to drop nothing.
pub const STALLED_AFTER: Duration = Duration::from_secs(5);
/// [`STALLED_AFTER`] in the pacer's looks. Counting looks rather than reading the clock leaves
/// out time the whole process spent stopped (`SIGSTOP`, a frozen container), after which every
/// thread would otherwise look stalled at once.
const STALLED_AFTER_CHECKS: u32 = (STALLED_AFTER.as_millis() / CHECK_EVERY.as_millis()) as u32;

/// Sets the scheduling policy of `thread`, at nice 0. Returns whether it took.
///
/// (The crate sets the nice value of the *calling* thread, so callers run at nice 0 already:
/// a background thread for itself, and a pacer, which only ever changes the policy of its
/// thread.)
fn set_policy(thread: ThreadId, idle: bool) -> bool {
    use thread_priority::unix::{
        set_thread_priority_and_policy, NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityOsValue};
    let policy = match idle {
        true => NormalThreadSchedulePolicy::Idle,
        false => NormalThreadSchedulePolicy::Other,
    };
    let nice_zero = ThreadPriority::Os(ThreadPriorityOsValue::default());
    set_thread_priority_and_policy(thread, nice_zero, ThreadSchedulePolicy::Normal(policy)).is_ok()
}

/// Puts the calling thread, called `what` (for the log), at `SCHED_IDLE`. A failure leaves it
/// at normal scheduling.
pub fn make_current_thread_idle(what: &str) {
    if !set_policy(thread_priority::unix::thread_native_id(), true) {
        tracing::warn!("{what} stays at normal scheduling: SCHED_IDLE was refused");
    }
}

/// Whether a thread of this process can go to `SCHED_IDLE` and come back, tried on a thread
/// started for the purpose.
fn can_leave_idle() -> bool {
    let probe = std::thread::spawn(|| {
        let me = thread_priority::unix::thread_native_id();
        set_policy(me, true) && set_policy(me, false)
    });
    probe.join().unwrap_or(false)
}

/// A paced thread's queue, as its pacer sees it.
pub trait Backlog: Send + 'static {
    fn queued(&self) -> usize;
    fn capacity(&self) -> usize;
    /// Counts one raise of the thread (for its metric).
    fn count_raise(&self);
}

/// What a pacer watches: how many passes its thread has finished (its sign of life), and its
/// queue.
struct Watched<B> {
    what: &'static str,
    passes: Arc<AtomicU64>,
    backlog: B,
}

/// The thread that raises an idle thread while it falls behind and lowers it once it keeps up.
pub struct Pacer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Pacer {
    /// Paces `paced`, called `what` (for the log), which adds one to `passes` on every pass.
    pub fn start<T>(
        what: &'static str,
        paced: &JoinHandle<T>,
        passes: Arc<AtomicU64>,
        backlog: impl Backlog,
    ) -> io::Result<Pacer> {
        let paced_thread = paced.as_pthread_t();
        let name = format!("{}-pacer", paced.thread().name().unwrap_or("lookout"));
        let watched = Watched {
            what,
            passes,
            backlog,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || pace(paced_thread, &watched, &thread_stop))?;
        Ok(Pacer { stop, thread })
    }

    /// Stops pacing, leaving the thread at normal scheduling for its last pass.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("a background thread's pacer panicked");
        }
    }
}

fn pace<B: Backlog>(paced: ThreadId, watched: &Watched<B>, stop: &AtomicBool) {
    let (what, backlog) = (watched.what, &watched.backlog);
    let capacity = backlog.capacity();
    let (filling, nearly_empty) = (capacity * 3 / 4, capacity / 8);
    let mut raised = false;
    let (mut passes, mut checks_since_pass) = (watched.passes.load(Ordering::Acquire), 0);
    while !stop.load(Ordering::Acquire) {
        let now_passes = watched.passes.load(Ordering::Acquire);
        if now_passes != passes {
            (passes, checks_since_pass) = (now_passes, 0);
        }
        checks_since_pass += 1;
        let stalled = checks_since_pass > STALLED_AFTER_CHECKS;
        if !raised && (stalled || backlog.queued() > filling) {
            if !set_policy(paced, false) {
                tracing::warn!("{what} could not be raised from SCHED_IDLE; it stays idle");
                return;
            }
            raised = true;
            backlog.count_raise();
            tracing::debug!(
                stalled,
                queued = backlog.queued(),
                "{what} raised to normal scheduling"
            );
        } else if raised && !stalled && backlog.queued() <= nearly_empty {
            raised = !set_policy(paced, true);
            tracing::debug!(lowered = !raised, "{what} back at SCHED_IDLE");
        }
        std::thread::park_timeout(CHECK_EVERY);
    }
    if !raised {
        set_policy(paced, false);
    }
}
