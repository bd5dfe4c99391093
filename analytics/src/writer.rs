//! The event writer: an OS thread that drains the queue in batches into a sink.

use crate::queue::EventReceiver;
use crate::RequestEvent;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Owns the writer thread; [`WriterHandle::shutdown`] flushes what is queued and joins it.
pub struct WriterHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How the writer thread is scheduled against the proxy's threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WriterPriority {
    /// Linux's `SCHED_IDLE`: the writer runs on CPU time no other thread wants, and a proxy
    /// thread that wakes up takes the CPU from it at once. With normal scheduling, a proxy
    /// thread waking on the writer's CPU waited up to a scheduler slice (the store took a
    /// 1-connection p99 from 0.2 to 2 ms), and at full load the writer's bursts stalled the
    /// proxy more than their CPU time. The price: on a machine with no CPU left over, the
    /// writer falls behind and the queue drops events (counted), rather than slowing the proxy;
    /// it did, in one benchmark run of two at full load, so this is not the default.
    Idle,
    /// Scheduled like every other thread: it keeps up while there is CPU to share, taking it
    /// from the proxy when there is none.
    #[default]
    Normal,
}

impl WriterPriority {
    /// Applies the priority to the calling thread. A failure leaves it at normal scheduling.
    fn apply_to_current_thread(self) {
        if self == WriterPriority::Normal {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            use thread_priority::unix::{
                set_thread_priority_and_policy, thread_native_id, NormalThreadSchedulePolicy,
                ThreadSchedulePolicy,
            };
            let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
            let set = set_thread_priority_and_policy(
                thread_native_id(),
                thread_priority::ThreadPriority::Min,
                idle,
            );
            if let Err(error) = set {
                tracing::warn!(?error, "the event writer stays at normal scheduling");
            }
        }
    }
}

/// Starts the writer thread for `receiver`, writing every batch into each of `sinks`.
pub fn spawn_writer(
    receiver: EventReceiver,
    sinks: Vec<Box<dyn EventSink>>,
    priority: WriterPriority,
) -> io::Result<WriterHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("lookout-events".into())
        .spawn(move || {
            priority.apply_to_current_thread();
            run(receiver, sinks, &thread_stop)
        })?;
    Ok(WriterHandle {
        stop,
        thread: Some(thread),
    })
}

impl WriterHandle {
    /// Writes every event still queued, then stops the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
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

fn run(receiver: EventReceiver, sinks: Vec<Box<dyn EventSink>>, stop: &AtomicBool) {
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
            WriterPriority::Normal,
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

    /// The scheduling policy of this process's threads named `name` (field 41 of their stat).
    fn policies_of_threads_named(name: &str) -> Vec<u32> {
        let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
        tasks
            .filter_map(|task| {
                let path = task.ok()?.path();
                let comm = std::fs::read_to_string(path.join("comm")).ok()?;
                let stat = std::fs::read_to_string(path.join("stat")).ok()?;
                // Fields after the command (which may hold spaces) start at state, field 3.
                let after_comm = stat.rsplit_once(')')?.1;
                let policy = after_comm.split_whitespace().nth(41 - 3)?.parse().ok()?;
                (comm.trim_end() == name).then_some(policy)
            })
            .collect()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_writer_runs_at_idle_priority_when_asked_to() {
        const SCHED_IDLE: u32 = 5;
        let (_queue, receiver) = EventQueue::bounded(16);
        let writer = spawn_writer(receiver, Vec::new(), WriterPriority::Idle).expect("writer");
        // The thread sets its own policy first thing; give it a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !policies_of_threads_named("lookout-events").contains(&SCHED_IDLE) {
            assert!(
                std::time::Instant::now() < deadline,
                "no writer thread at SCHED_IDLE"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        writer.shutdown();
    }

    #[test]
    fn failed_writes_are_counted_and_the_writer_keeps_going() {
        let (queue, receiver) = EventQueue::bounded(16);
        let writer = spawn_writer(receiver, vec![Box::new(Broken)], WriterPriority::Normal).expect("writer");
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
