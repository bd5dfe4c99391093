//! The gateway's own process, read when asked (a scrape, a push, `/admin/stats`, the dashboard)
//! and every 10 s by the stats task for the dashboard's rates, never on the request path: CPU time, memory, file descriptors and threads (the `process_*` metrics every
//! Prometheus client library exposes, read from `/proc` by metrics-process), and how busy the
//! async runtime's workers are (tokio's runtime metrics): whether the gateway itself is the
//! bottleneck, or close to its descriptor limit. And its version, as `lookout_build_info`.
//!
//! Written into the exposition as text rather than through the `metrics` recorders: CPU and busy
//! times are fractions of seconds, and the recorders' counters count whole numbers.

use serde::Serialize;
use std::fmt::Write;
use std::time::Instant;

/// One reading of the process and its runtime.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ProcessStats {
    /// User and system CPU time, all threads.
    cpu_seconds: Option<f64>,
    resident_memory_bytes: Option<u64>,
    virtual_memory_bytes: Option<u64>,
    open_fds: Option<u64>,
    /// The soft limit; 0 when unlimited.
    max_fds: Option<u64>,
    start_time_seconds: Option<u64>,
    threads: Option<u64>,
    /// The runtime serving the proxy and the admin listener.
    runtime: Option<RuntimeStats>,
}

#[derive(Debug, Serialize)]
struct RuntimeStats {
    workers: usize,
    /// Each worker's time spent running tasks since the start, in seconds: its busy share is the
    /// rate of this.
    worker_busy_seconds: Vec<f64>,
    /// Tasks alive: connections, requests under way, the gateway's own loops.
    alive_tasks: usize,
    /// Tasks waiting in the runtime's shared queue for a worker to take them.
    global_queue_depth: usize,
}

impl ProcessStats {
    /// The process as it stands, and the runtime the caller runs on (none outside one).
    pub(crate) fn read() -> ProcessStats {
        let process = metrics_process::collector::collect();
        ProcessStats {
            cpu_seconds: process.cpu_seconds_total,
            resident_memory_bytes: process.resident_memory_bytes,
            virtual_memory_bytes: process.virtual_memory_bytes,
            open_fds: process.open_fds,
            max_fds: process.max_fds,
            start_time_seconds: process.start_time_seconds,
            threads: process.threads,
            runtime: tokio::runtime::Handle::try_current().ok().map(|handle| {
                let metrics = handle.metrics();
                let workers = metrics.num_workers();
                RuntimeStats {
                    workers,
                    worker_busy_seconds: (0..workers)
                        .map(|worker| metrics.worker_total_busy_duration(worker).as_secs_f64())
                        .collect(),
                    alive_tasks: metrics.num_alive_tasks(),
                    global_queue_depth: metrics.global_queue_depth(),
                }
            }),
        }
    }

    /// Appends the families in the Prometheus text format; a figure that could not be read has
    /// no sample.
    pub(crate) fn render(&self, out: &mut String) {
        let as_f64 = |value: Option<u64>| value.map(|v| v as f64);
        let process = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                as_f64(self.resident_memory_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                as_f64(self.virtual_memory_bytes),
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                as_f64(self.open_fds),
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors (the soft limit; 0: unlimited).",
                as_f64(self.max_fds),
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since the Unix epoch in seconds.",
                as_f64(self.start_time_seconds),
            ),
            (
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                as_f64(self.threads),
            ),
        ];
        for (name, kind, help, value) in process {
            family(out, name, kind, help, value.map(|value| ("", value)));
        }
        let build = "The gateway's version, as a label (always 1): which replicas run which build.";
        let version = concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"}");
        family(out, "lookout_build_info", "gauge", build, Some((version, 1.0)));
        if let Some(runtime) = &self.runtime {
            runtime.render(out);
        }
    }
}

impl RuntimeStats {
    fn render(&self, out: &mut String) {
        let gauges = [
            (
                "lookout_runtime_workers",
                "Worker threads of the gateway's async runtime (the proxy's and the admin listener's).",
                self.workers,
            ),
            (
                "lookout_runtime_alive_tasks",
                "Tasks alive in the async runtime: connections, requests under way, the gateway's own loops.",
                self.alive_tasks,
            ),
            (
                "lookout_runtime_global_queue_depth",
                "Tasks waiting in the async runtime's shared queue for a worker to take them: above 0 for long, the workers cannot keep up.",
                self.global_queue_depth,
            ),
        ];
        for (name, help, value) in gauges {
            family(out, name, "gauge", help, Some(("", value as f64)));
        }
        let busy = "Time each worker of the async runtime spent running tasks, in seconds: its rate is the worker's busy share, near 1 when the gateway is CPU-bound.";
        let labels: Vec<String> = (0..self.worker_busy_seconds.len())
            .map(|worker| format!("{{worker=\"{worker}\"}}"))
            .collect();
        let samples = labels
            .iter()
            .map(String::as_str)
            .zip(self.worker_busy_seconds.iter().copied());
        family(
            out,
            "lookout_runtime_worker_busy_seconds_total",
            "counter",
            busy,
            samples,
        );
    }
}

/// The two latest readings the stats task took ([`super::ROTATION`] apart), for the dashboard's
/// rates: the CPU used and the workers' busy share over that window.
#[derive(Debug, Default)]
pub(crate) struct ProcessWindow {
    earlier: Option<(Instant, ProcessStats)>,
    latest: Option<(Instant, ProcessStats)>,
}

impl ProcessWindow {
    /// Takes a new reading; the latest becomes the earlier.
    pub(crate) fn advance(&mut self, reading: ProcessStats) {
        self.earlier = self.latest.replace((Instant::now(), reading));
    }

    /// The figures the dashboard shows: the rates over the window, and `now`'s gauges.
    pub(crate) fn figures(&self, now: &ProcessStats) -> lookout_dashboard::ProcessFigures {
        let (cpu_cores, workers_busy) = match (&self.earlier, &self.latest) {
            (Some((from, earlier)), Some((to, latest))) => {
                let seconds = to.duration_since(*from).as_secs_f64().max(f64::EPSILON);
                let cpu = latest.cpu_seconds.zip(earlier.cpu_seconds);
                let busy = latest.busy_seconds().zip(earlier.busy_seconds());
                let workers = latest.runtime.as_ref().map_or(1, |r| r.workers.max(1)) as f64;
                (
                    cpu.map(|(to, from)| (to - from) / seconds),
                    busy.map(|(to, from)| (to - from) / seconds / workers),
                )
            }
            _ => (None, None),
        };
        lookout_dashboard::ProcessFigures {
            cpu_cores,
            workers_busy,
            resident_memory_bytes: now.resident_memory_bytes,
            open_fds: now.open_fds,
            max_fds: now.max_fds,
        }
    }
}

impl ProcessStats {
    /// All the workers' busy time together.
    fn busy_seconds(&self) -> Option<f64> {
        Some(self.runtime.as_ref()?.worker_busy_seconds.iter().sum())
    }
}

/// One family: its help and type, then each sample (`labels` in braces, or empty).
fn family<'a>(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: impl IntoIterator<Item = (&'a str, f64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_written_with_their_help_type_and_fractional_values() {
        let stats = ProcessStats {
            cpu_seconds: Some(1.25),
            open_fds: Some(12),
            runtime: Some(RuntimeStats {
                workers: 2,
                worker_busy_seconds: vec![0.5, 0.75],
                alive_tasks: 7,
                global_queue_depth: 0,
            }),
            ..ProcessStats::default()
        };
        let mut text = String::new();
        stats.render(&mut text);
        assert!(text.contains(
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
             # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 1.25\n\n"
        ));
        assert!(text.contains("process_open_fds 12\n"));
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n\n"),
            "no sample: unread"
        );
        assert!(text.contains(
            "lookout_runtime_worker_busy_seconds_total{worker=\"0\"} 0.5\n\
             lookout_runtime_worker_busy_seconds_total{worker=\"1\"} 0.75\n"
        ));
        assert!(text.contains("lookout_runtime_alive_tasks 7\n"));
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("lookout_build_info{{version=\"{version}\"}} 1\n")));
    }

    #[test]
    fn the_window_gives_the_cpu_and_the_busy_share_between_its_readings() {
        let reading = |cpu: f64, busy: [f64; 2]| ProcessStats {
            cpu_seconds: Some(cpu),
            resident_memory_bytes: Some(1 << 20),
            runtime: Some(RuntimeStats {
                workers: 2,
                worker_busy_seconds: busy.to_vec(),
                alive_tasks: 1,
                global_queue_depth: 0,
            }),
            ..ProcessStats::default()
        };
        let mut window = ProcessWindow::default();
        let now = reading(0.0, [0.0, 0.0]);
        window.advance(reading(1.0, [0.5, 0.25]));
        let first = window.figures(&now);
        assert_eq!(
            (first.cpu_cores, first.workers_busy),
            (None, None),
            "one reading: no rate"
        );
        assert_eq!(first.resident_memory_bytes, Some(1 << 20));
        if let Some((at, _)) = window.latest.as_mut() {
            *at = at
                .checked_sub(std::time::Duration::from_secs(10))
                .expect("10 s ago");
        }
        // The first reading, taken 10 s back, becomes the earlier: 3 s of CPU and 10 s of busy
        // time on two workers in between.
        window.advance(reading(4.0, [6.5, 4.25]));
        let figures = window.figures(&now);
        let cores = figures.cpu_cores.expect("a rate");
        let busy = figures.workers_busy.expect("a share");
        assert!((0.29..=0.31).contains(&cores), "{cores}");
        assert!((0.49..=0.51).contains(&busy), "{busy}");
    }

    #[test]
    fn a_reading_on_a_runtime_has_this_process_and_the_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let stats = runtime.block_on(async { ProcessStats::read() });
        assert!(stats.cpu_seconds.is_some(), "in clock ticks: 0 at first");
        assert!(stats.open_fds.is_some_and(|fds| fds > 0));
        assert!(stats.resident_memory_bytes.is_some_and(|rss| rss > 0));
        assert_eq!(stats.runtime.map(|r| r.workers), Some(1));
        assert!(ProcessStats::read().runtime.is_none(), "outside a runtime");
    }
}
