//! The event writer: an OS thread that drains the queue in batches into a sink, at a priority
//! that keeps it off the proxy's CPU ([`crate::pacing`]).

use crate::pacing::{self, BackgroundPriority, Backlog, Pacer, Plan};
use crate::queue::{Counters, EventReceiver};
use crate::RequestEvent;
use crossbeam_channel::Receiver;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Where batches of events end up. Implementations may block (files, databases): they run on
/// the writer thread, never on the proxy's.
pub trait EventSink: Send + 'static {
    fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()>;

    /// Called on every pass of the writer, events or not: periodic work (rollups, retention,
    /// reconnecting) goes here.
    fn maintain(&mut self) {}

    /// Called once, after the last batch.
    fn close(&mut self) {}
}

/// Largest batch handed to a sink at once: bounds the writer's buffer, and the time a sink spends
/// on one call. (The store commits about once a second, whatever the batches.)
const MAX_BATCH: usize = 8192;
/// How often the writer drains the queue. It sleeps in between instead of blocking on the
/// channel, so the proxy never pays for waking it up (a futex call per event, under load); the
/// cost is that the sink trails the proxy by up to this much.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

/// The writer, in the log.
const WRITER: &str = "the event writer";

/// The writer's queue, for its pacer.
struct WriterBacklog {
    queue: Receiver<RequestEvent>,
    counters: Arc<Counters>,
}

impl Backlog for WriterBacklog {
    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn capacity(&self) -> usize {
        self.queue.capacity().unwrap_or(0)
    }

    fn count_raise(&self) {
        self.counters.writer_raised.fetch_add(1, Ordering::Relaxed);
    }
}

/// Owns the writer thread; [`WriterHandle::shutdown`] flushes what is queued and joins it.
pub struct WriterHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pacer: Option<Pacer>,
}

/// Starts the writer thread for `receiver`, writing every batch into each of `sinks`.
pub fn spawn_writer(
    receiver: EventReceiver,
    sinks: Vec<Box<dyn EventSink>>,
    priority: BackgroundPriority,
) -> io::Result<WriterHandle> {
    let plan = priority.plan(WRITER);
    let stop = Arc::new(AtomicBool::new(false));
    let passes = Arc::new(AtomicU64::new(0));
    let backlog = WriterBacklog {
        queue: receiver.rx.clone(),
        counters: receiver.counters.clone(),
    };
    let (thread_stop, thread_passes) = (stop.clone(), passes.clone());
    let thread = std::thread::Builder::new()
        .name("lookout-events".into())
        .spawn(move || {
            if plan != Plan::Normal {
                pacing::make_current_thread_idle(WRITER);
            }
            run(receiver, sinks, &thread_stop, &thread_passes)
        })?;
    let pacer = match plan {
        Plan::Paced => Some(Pacer::start(WRITER, &thread, passes, backlog)?),
        Plan::Normal | Plan::Idle => None,
    };
    Ok(WriterHandle {
        stop,
        thread: Some(thread),
        pacer,
    })
}

impl WriterHandle {
    /// Writes every event still queued, then stops the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(pacer) = self.pacer.take() {
            pacer.stop();
        }
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!("the event writer thread panicked");
            }
        }
    }
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A sink and whether its last write failed, so that a failing sink is logged when it starts and
/// stops failing rather than on every batch.
struct Output {
    sink: Box<dyn EventSink>,
    failing: bool,
}

/// Drains the queue until `stop`, counting its passes in `passes` (the pacer's sign of life).
fn run(receiver: EventReceiver, sinks: Vec<Box<dyn EventSink>>, stop: &AtomicBool, passes: &AtomicU64) {
    let mut outputs: Vec<Output> = sinks
        .into_iter()
        .map(|sink| Output { sink, failing: false })
        .collect();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        // Read the flag before draining, so that events queued before shutdown are written.
        let stopping = stop.load(Ordering::Acquire);
        loop {
            batch.extend(receiver.rx.try_iter().take(MAX_BATCH));
            if batch.is_empty() {
                break;
            }
            let full = batch.len() == MAX_BATCH;
            write(&receiver, &mut outputs, &mut batch);
            // What arrived during a partial batch's write waits for the next pass: draining it at
            // once would turn a steady stream into many tiny batches, each paying a sink's fixed
            // costs (the store's appenders, the access log's flush).
            if !full && !stopping {
                break;
            }
        }
        for output in &mut outputs {
            output.sink.maintain();
        }
        if stopping {
            outputs.iter_mut().for_each(|output| output.sink.close());
            return;
        }
        passes.fetch_add(1, Ordering::Release);
        std::thread::park_timeout(DRAIN_INTERVAL);
    }
}

fn write(receiver: &EventReceiver, outputs: &mut [Output], batch: &mut Vec<RequestEvent>) {
    let counters = &receiver.counters;
    let mut all_written = true;
    for output in outputs.iter_mut() {
        match output.sink.write_batch(batch) {
            Ok(()) if output.failing => {
                output.failing = false;
                tracing::info!("request events are being written again");
            }
            Ok(()) => {}
            Err(error) => {
                all_written = false;
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                if !output.failing {
                    output.failing = true;
                    tracing::warn!(%error, "writing request events failed; counting what is lost");
                }
            }
        }
    }
    if all_written {
        counters.written.fetch_add(batch.len() as u64, Ordering::Relaxed);
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample_event;
    use crate::pacing::STALLED_AFTER;
    use crate::EventQueue;
    use std::sync::Mutex;

    /// A sink that keeps what it is given, to check what the writer hands over.
    struct Collect(Arc<Mutex<Vec<RequestEvent>>>);

    impl EventSink for Collect {
        fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()> {
            self.0.lock().expect("lock").extend_from_slice(events);
            Ok(())
        }
    }

    struct Broken;

    impl EventSink for Broken {
        fn write_batch(&mut self, _: &[RequestEvent]) -> io::Result<()> {
            Err(io::Error::other("disk full"))
        }
    }

    #[test]
    fn shutdown_writes_every_queued_event() {
        let (queue, receiver) = EventQueue::bounded(10_000);
        for i in 0..5_000 {
            queue.offer(sample_event(i));
        }
        let collected = Arc::new(Mutex::new(Vec::new()));
        let writer = spawn_writer(
            receiver,
            vec![Box::new(Collect(collected.clone()))],
            BackgroundPriority::Normal,
        )
        .expect("writer");
        writer.shutdown();
        let events = collected.lock().expect("lock");
        assert_eq!(events.len(), 5_000);
        assert!(events
            .iter()
            .enumerate()
            .all(|(i, e)| e.status == 200 && e.bytes_out == i as u64));
        assert_eq!(queue.stats().written, 5_000);
    }

    /// A sink that tells the test which thread writes, then holds each write until the test
    /// opens the gate (drops its end).
    struct Gate {
        writer_tid: crossbeam_channel::Sender<u32>,
        gate: crossbeam_channel::Receiver<()>,
    }

    impl EventSink for Gate {
        fn write_batch(&mut self, _: &[RequestEvent]) -> io::Result<()> {
            // `/proc/thread-self` links to `<pid>/task/<tid>`.
            let me = std::fs::read_link("/proc/thread-self").expect("thread-self");
            let tid = me
                .file_name()
                .and_then(|t| t.to_str()?.parse().ok())
                .expect("tid");
            let _ = self.writer_tid.send(tid);
            let _ = self.gate.recv();
            Ok(())
        }
    }

    const SCHED_OTHER: u32 = 0;
    const SCHED_IDLE: u32 = 5;

    /// The scheduling policy of this process's thread `tid` (field 41 of its stat).
    fn policy_of(tid: u32) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
        // Fields after the command (which may hold spaces) start at state, field 3.
        let after_comm = stat.rsplit_once(')').expect("comm").1;
        after_comm
            .split_whitespace()
            .nth(41 - 3)
            .expect("policy")
            .parse()
            .expect("number")
    }

    fn wait_for_policy(tid: u32, policy: u32, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        while policy_of(tid) != policy {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never reached policy {policy}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts an idle writer into a [`Gate`], offers it `events`, and checks it is raised
    /// (where this process may raise it) while held in its first write, and lowered once the
    /// gate opens.
    fn raised_while_held_then_lowered(events: u64, raised_within: Duration) {
        let (queue, receiver) = EventQueue::bounded(64);
        let (tid_tx, tid_rx) = crossbeam_channel::unbounded();
        let (open, gate) = crossbeam_channel::bounded(0);
        let sink = Gate {
            writer_tid: tid_tx,
            gate,
        };
        let plan = BackgroundPriority::Idle.plan(WRITER);
        let writer = spawn_writer(receiver, vec![Box::new(sink)], BackgroundPriority::Idle).expect("writer");
        queue.offer(sample_event(0));
        let tid = tid_rx.recv_timeout(Duration::from_secs(10)).expect("a write");
        (1..events).for_each(|i| queue.offer(sample_event(i)));
        if plan == Plan::Idle {
            // This process may not raise a thread out of SCHED_IDLE: the writer stays idle.
            std::thread::sleep(STALLED_AFTER + Duration::from_millis(500));
            assert_eq!((policy_of(tid), queue.stats().writer_raised), (SCHED_IDLE, 0));
        } else {
            wait_for_policy(tid, SCHED_OTHER, raised_within);
            assert_eq!(queue.stats().writer_raised, 1);
            drop(open);
            wait_for_policy(tid, SCHED_IDLE, Duration::from_secs(10));
        }
        writer.shutdown();
    }

    #[test]
    fn an_idle_writer_is_raised_when_its_queue_fills_and_lowered_once_it_empties() {
        // Past three quarters of the 64 the queue holds: raised long before it would count as
        // stalled.
        raised_while_held_then_lowered(60, STALLED_AFTER / 2);
    }

    #[test]
    fn an_idle_writer_is_raised_when_it_stalls_and_lowered_once_it_passes_again() {
        // One event, held in its write: only the stall raises it.
        raised_while_held_then_lowered(1, STALLED_AFTER + Duration::from_secs(10));
    }

    #[test]
    fn failed_writes_are_counted_and_the_writer_keeps_going() {
        let (queue, receiver) = EventQueue::bounded(16);
        let writer =
            spawn_writer(receiver, vec![Box::new(Broken)], BackgroundPriority::Normal).expect("writer");
        queue.offer(sample_event(1));
        writer.shutdown();
        queue.offer(sample_event(2));
        let stats = queue.stats();
        assert_eq!((stats.written, stats.write_errors), (0, 1));
        assert_eq!(
            stats.dropped, 1,
            "an event offered after the writer stopped is dropped and counted"
        );
    }
}
