//! Reload triggers besides the admin API (SIGHUP, a watch on the config file), and the counters
//! of reloads by result.

use super::Shared;
use crate::stats::{Registry, CONFIG_RELOADS};
use metrics::{Counter, Label};
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// `lookout_config_reloads_total`, by result. Both series exist from the start, at zero: a
/// counter whose first sample is already 1 shows no `increase()` in Prometheus, so the first
/// rejected reload would raise no alert.
pub(super) struct ReloadCounters {
    pub(super) success: Counter,
    pub(super) failure: Counter,
}

impl ReloadCounters {
    pub(super) fn register(registry: &Registry) -> ReloadCounters {
        // Registering a counter's handle is what makes its series, at zero.
        let counter = |result: &'static str| {
            registry
                .metrics()
                .counter(CONFIG_RELOADS, vec![Label::new("result", result)])
        };
        ReloadCounters {
            success: counter("success"),
            failure: counter("failure"),
        }
    }
}

/// Editors save in bursts (truncate, write, rename); changes this close together reload once.
const DEBOUNCE: Duration = Duration::from_millis(300);

pub(super) fn spawn_sighup_reloader(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGHUP");
                return;
            }
        };
        loop {
            tokio::select! {
                Some(()) = hangups.recv() => {
                    tracing::info!("SIGHUP: reloading the config");
                    let _ = shared.reload().await;
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// Watches the directory holding the config (files are often replaced, not rewritten) and
/// reloads when the config file changes. The returned watcher must be kept alive.
pub(super) fn watch_file(shared: Arc<Shared>, path: &Path) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let file_name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event.paths.iter().any(|p| p.file_name() == file_name.as_deref());
        if ours && (event.kind.is_modify() || event.kind.is_create()) {
            // A full channel means a reload is already pending, which is enough.
            let _ = tx.try_send(());
        }
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("config file changed: reloading");
            let _ = shared.reload().await;
        }
    });
    Ok(watcher)
}
