//! How the writer thread is scheduled against the proxy's threads.
//!
//! At Linux's `SCHED_IDLE` the writer runs only on CPU time no other thread wants, and a proxy
//! thread that wakes up takes the CPU from it at once. Scheduled like any other thread, it takes
//! the proxy's CPU even while another is free: at full load with one proxy worker on two cores,
//! the machine sat idle more with the store on than off, while the proxy lost a sixth of its
//! requests; at `SCHED_IDLE` the writer used that idle time instead.
//!
//! An idle writer must not starve where no CPU is left over, though. The [`Pacer`], a thread of
//! its own that looks every [`CHECK_EVERY`], raises the writer to normal scheduling when the
//! queue is three quarters full (before it drops events) or the writer has not finished a pass
//! for [`STALLED_AFTER`] (so the store falls no further behind), and lowers it again once the
//! queue is nearly empty. Raising a thread out of `SCHED_IDLE` takes `CAP_SYS_NICE` or an
//! `RLIMIT_NICE` of at least 20; where the process has neither, `auto` keeps the writer at
//! normal scheduling rather than let it starve.

use crate::queue::Counters;
use crate::RequestEvent;
use crossbeam_channel::Receiver;
use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thread_priority::unix::ThreadId;

/// How the writer thread is scheduled, as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriterPriority {
    /// [`WriterPriority::Idle`] where the writer can be raised again, normal elsewhere.
    #[default]
    Auto,
    /// `SCHED_IDLE`, raised to normal while it falls behind. Where it cannot be raised, it
    /// stays idle: on a machine with no CPU left over, the queue then drops events (counted)
    /// rather than slow the proxy.
    Idle,
    /// Scheduled like every other thread.
    Normal,
}

/// What a [`WriterPriority`] comes to in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    Normal,
    /// Idle, with a [`Pacer`] to raise it.
    Paced,
    /// Idle for good.
    Idle,
}

impl WriterPriority {
    pub(super) fn plan(self) -> Plan {
        match (self, self != WriterPriority::Normal && can_leave_idle()) {
            (WriterPriority::Normal, _) | (WriterPriority::Auto, false) => Plan::Normal,
            (_, true) => Plan::Paced,
            (WriterPriority::Idle, false) => {
                tracing::warn!(
                    "the event writer runs at SCHED_IDLE and cannot be raised when it falls behind \
                     (that takes CAP_SYS_NICE or an RLIMIT_NICE of 20): on a busy machine, events are dropped"
                );
                Plan::Idle
            }
        }
    }
}

/// How often the pacer looks at the writer.
const CHECK_EVERY: Duration = Duration::from_millis(50);
/// A writer that has not finished a pass for this long is starved (it passes every 100 ms, and
/// a pass that finds a backlog goes on until it has written it). Raising it after 300 ms, on a
/// benchmark at full load, raised it more than once a second and cost the proxy 7–10% of its
/// requests rather than 2–6%; the queue filling up is what raises it in time to drop nothing.
pub(super) const STALLED_AFTER: Duration = Duration::from_secs(5);

/// Sets the scheduling policy of `thread`, at nice 0. Returns whether it took.
///
/// (The crate sets the nice value of the *calling* thread, so callers run at nice 0 already:
/// the writer for itself, and the pacer, which only ever changes the policy of the writer.)
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

/// Puts the calling thread at `SCHED_IDLE`. A failure leaves it at normal scheduling.
pub(super) fn make_current_thread_idle() {
    if !set_policy(thread_priority::unix::thread_native_id(), true) {
        tracing::warn!("the event writer stays at normal scheduling: SCHED_IDLE was refused");
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

/// What the pacer watches: how many passes the writer has finished, and its queue (with the
/// counter of raises).
pub(super) struct Watched {
    pub(super) passes: Arc<AtomicU64>,
    pub(super) queue: Receiver<RequestEvent>,
    pub(super) counters: Arc<Counters>,
}

/// The thread that raises an idle writer while it falls behind and lowers it once it keeps up.
pub(super) struct Pacer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Pacer {
    pub(super) fn start(writer: &JoinHandle<()>, watched: Watched) -> io::Result<Pacer> {
        let writer = writer.as_pthread_t();
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lookout-events-pacer".into())
            .spawn(move || pace(writer, &watched, &thread_stop))?;
        Ok(Pacer { stop, thread })
    }

    /// Stops pacing, leaving the writer at normal scheduling for its last flush.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.thread().unpark();
        if self.thread.join().is_err() {
            tracing::error!("the event writer's pacer panicked");
        }
    }
}

fn pace(writer: ThreadId, watched: &Watched, stop: &AtomicBool) {
    let capacity = watched.queue.capacity().unwrap_or(0);
    let (filling, nearly_empty) = (capacity * 3 / 4, capacity / 8);
    let mut raised = false;
    let (mut passes, mut last_pass) = (watched.passes.load(Ordering::Acquire), Instant::now());
    while !stop.load(Ordering::Acquire) {
        let now_passes = watched.passes.load(Ordering::Acquire);
        if now_passes != passes {
            (passes, last_pass) = (now_passes, Instant::now());
        }
        let stalled = last_pass.elapsed() >= STALLED_AFTER;
        if !raised && (stalled || watched.queue.len() > filling) {
            if !set_policy(writer, false) {
                tracing::warn!("the event writer could not be raised from SCHED_IDLE; it stays idle");
                return;
            }
            raised = true;
            watched.counters.writer_raised.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                stalled,
                queued = watched.queue.len(),
                "event writer raised to normal scheduling"
            );
        } else if raised && !stalled && watched.queue.len() <= nearly_empty {
            raised = !set_policy(writer, true);
            tracing::debug!(lowered = !raised, "event writer back at SCHED_IDLE");
        }
        std::thread::park_timeout(CHECK_EVERY);
    }
    if !raised {
        set_policy(writer, false);
    }
}
