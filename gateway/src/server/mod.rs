//! The running gateway: its two listeners (proxy and admin), the event writer, config reload
//! (admin API, SIGHUP, file watch) and graceful shutdown.

mod admin;
mod admin_guards;
mod cache_api;
mod canary_api;
mod client_io;
mod connection_errors;
mod connection_limit;
mod instances_api;
mod json_refusals;
mod proxy_listener;
mod redirect_listener;
mod reload;
mod sql_api;
mod variants_api;

use crate::config::{AccessLogTarget, Config, ConfigErrors, MetricsPush, OtlpLogs, TraceSettings};
use crate::otlp_logs::OtlpLogSink;
use crate::proxy::ProxyState;
use crate::stats::{Registry, ROTATION};
use crate::tls::HandshakeMetrics;
use crate::traces::{TraceSetupError, Tracing};
use crate::upstream::spawn_watchers;
use arc_swap::ArcSwap;
use connection_errors::ConnectionErrors;
use connection_limit::ConnectionLimit;
use lookout_analytics::{
    spawn_writer, AccessLogFile, EventQueue, EventSink, JsonLinesSink, QueueStats, Store, StoreError,
    WriterHandle,
};
use proxy_listener::ListenerTls;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where the config came from, so a reload can read it again.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// Generated in memory (demo mode, `lookout proxy`); reloading re-validates the same text.
    Inline {
        name: String,
        text: String,
    },
}

impl ConfigSource {
    /// Loads the config for a new gateway.
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        self.load_into(Arc::default())
    }

    /// Loads the config against a gateway's registry (its statistics and instance state).
    pub fn load_into(&self, registry: Arc<Registry>) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::File(path) => crate::config::load_file_into(path, registry),
            ConfigSource::Inline { name, text } => {
                crate::config::load_str_into(name.as_str(), text, registry)
            }
        }
    }
}

/// Which reload triggers to install besides `POST /admin/reload`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    pub reload_on_sighup: bool,
    pub watch_config_file: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the access log {path}: {source}")]
    AccessLog { path: PathBuf, source: std::io::Error },
    #[error(
        "the admin listener {0} is not on loopback and has no token (set admin.token or LOOKOUT_ADMIN_TOKEN)"
    )]
    AdminUnprotected(SocketAddr),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the event writer: {0}")]
    Writer(std::io::Error),
    #[error("cannot watch the config file: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Traces(#[from] TraceSetupError),
    #[error(transparent)]
    Otlp(#[from] crate::otlp_client::OtlpClientError),
    #[error(transparent)]
    OtlpLogs(#[from] crate::otlp_logs::OtlpLogsError),
}

/// Where a config sends traces, metrics and events over OTLP.
#[derive(Debug, PartialEq)]
struct Telemetry {
    traces: Option<TraceSettings>,
    metrics_push: Option<MetricsPush>,
    access_log: Option<OtlpLogs>,
}

impl Telemetry {
    fn of(config: &Config) -> Self {
        Telemetry {
            traces: config.traces.clone(),
            metrics_push: config.metrics_push.clone(),
            access_log: config.access_log_otlp.clone(),
        }
    }
}

/// State shared by the listeners and the reload triggers.
pub(crate) struct Shared {
    pub(crate) proxy: Arc<ProxyState>,
    pub(crate) source: ConfigSource,
    pub(crate) access: Arc<lookout_dashboard::Access>,
    pub(crate) jaeger_ui: Option<Arc<str>>,
    pub(crate) draining: AtomicBool,
    pub(crate) generation: AtomicU64,
    pub(crate) listeners: crate::config::Listeners,
    /// The proxy listener's TLS, whose settings a reload swaps.
    tls: Option<Arc<ListenerTls>>,
    /// The proxy listener's cap on open client connections (read at start).
    pub(crate) connections: Arc<ConnectionLimit>,
    /// The head limits the gateway started with: the parser's and the cap's are read only then.
    started_limits: crate::edge::HeadLimits,
    /// Where traces, metrics and events went over OTLP at start: read only then.
    started_telemetry: Telemetry,
    pub(crate) registry: Arc<Registry>,
    /// The analytics store, when on.
    pub(crate) store: Option<Store>,
    reload_lock: tokio::sync::Mutex<()>,
    reloads: reload::ReloadCounters,
}

/// A started gateway. Dropping it without [`Gateway::shutdown`] stops it abruptly.
pub struct Gateway {
    shared: Arc<Shared>,
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    drain_timeout: Duration,
    stop: watch::Sender<bool>,
    proxy_task: JoinHandle<()>,
    admin_task: JoinHandle<()>,
    redirect: Option<(SocketAddr, JoinHandle<()>)>,
    writer: Option<WriterHandle>,
    metrics_push: Option<crate::metrics_push::PushHandle>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Gateway {
    /// Binds both listeners and starts serving `config`.
    pub async fn start(
        config: Config,
        source: ConfigSource,
        options: StartOptions,
    ) -> Result<Gateway, StartError> {
        let listeners = config.listeners;
        if config.admin_unprotected() {
            return Err(StartError::AdminUnprotected(listeners.admin));
        }
        let proxy_listener = bind(listeners.proxy).await?;
        let admin_listener = bind(listeners.admin).await?;
        let redirect_listener = match listeners.http_redirect {
            Some(addr) => Some((addr, bind(addr).await?)),
            None => None,
        };
        let started_telemetry = Telemetry::of(&config);
        let (events, writer, store) = start_event_pipeline(&config)?;
        let tracing = config
            .traces
            .clone()
            .map(Tracing::start)
            .transpose()?
            .map(Arc::new);
        spawn_watchers(config.routes.upstreams());
        let tls = config.tls.map(|settings| {
            Arc::new(ListenerTls {
                current: Arc::new(ArcSwap::new(settings)),
                metrics: HandshakeMetrics::new(config.registry.metrics()),
            })
        });
        let started_limits = config.routes.head_limits;
        let connections = Arc::new(ConnectionLimit::new(
            started_limits.max_connections,
            config.registry.metrics(),
        ));
        let shared = Arc::new(Shared {
            proxy: Arc::new(ProxyState {
                routes: ArcSwap::new(config.routes),
                events,
                tracing,
            }),
            source,
            access: Arc::new(lookout_dashboard::Access::new(config.admin_token)),
            jaeger_ui: config.jaeger_ui,
            draining: AtomicBool::new(false),
            generation: AtomicU64::new(1),
            listeners,
            tls: tls.clone(),
            connections: connections.clone(),
            started_limits,
            started_telemetry,
            registry: config.registry.clone(),
            store,
            reload_lock: tokio::sync::Mutex::new(()),
            reloads: reload::ReloadCounters::register(&config.registry),
        });
        let (stop, stopped) = watch::channel(false);
        let proxy_addr = local_addr(&proxy_listener, listeners.proxy)?;
        let admin_addr = local_addr(&admin_listener, listeners.admin)?;
        let redirect = spawn_redirect(redirect_listener, tls.as_deref(), proxy_addr.port(), &stopped)?;
        let proxy_task = tokio::spawn(proxy_listener::serve(
            proxy_listener,
            shared.proxy.clone(),
            tls,
            connections,
            Arc::new(ConnectionErrors::new(config.registry.metrics())),
            stopped.clone(),
            config.drain_timeout,
        ));
        let admin_task = tokio::spawn(admin::serve(admin_listener, shared.clone(), stopped.clone()));
        tokio::spawn(rotate_stats(shared.registry.clone(), stopped.clone()));
        let metrics_push = match &shared.started_telemetry.metrics_push {
            Some(push) => {
                let exposition = Arc::new(admin::Scrape(shared.clone()));
                Some(crate::metrics_push::spawn(push, exposition, &shared.registry)?)
            }
            None => None,
        };
        if options.reload_on_sighup {
            reload::spawn_sighup_reloader(shared.clone(), stopped.clone());
        }
        let watcher = match (&shared.source, options.watch_config_file) {
            (ConfigSource::File(path), true) => Some(reload::watch_file(shared.clone(), path)?),
            _ => None,
        };
        tracing::info!(%proxy_addr, %admin_addr, "lookout is serving");
        Ok(Gateway {
            shared,
            proxy_addr,
            admin_addr,
            drain_timeout: config.drain_timeout,
            stop,
            proxy_task,
            admin_task,
            redirect,
            writer,
            metrics_push,
            _watcher: watcher,
        })
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The plain-HTTP listener that redirects to HTTPS, when configured.
    pub fn redirect_addr(&self) -> Option<SocketAddr> {
        self.redirect.as_ref().map(|(addr, _)| *addr)
    }

    /// Reloads the config from its source; on error the running config stays.
    pub async fn reload(&self) -> Result<u64, ConfigErrors> {
        self.shared.reload().await.map(|reloaded| reloaded.generation)
    }

    /// The queue request events go through, for the demo's history.
    pub(crate) fn event_queue(&self) -> &EventQueue {
        &self.shared.proxy.events
    }

    pub fn event_stats(&self) -> QueueStats {
        self.shared.proxy.events.stats()
    }

    /// The analytics store, when on.
    pub fn store(&self) -> Option<&Store> {
        self.shared.store.as_ref()
    }

    /// Stops accepting, lets in-flight requests finish (up to the drain timeout), then writes
    /// the events still queued.
    pub async fn shutdown(mut self) {
        tracing::info!(timeout = ?self.drain_timeout, "draining");
        self.shared.draining.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let grace = self.drain_timeout + Duration::from_secs(1);
        if tokio::time::timeout(grace, &mut self.proxy_task).await.is_err() {
            self.proxy_task.abort();
        }
        if tokio::time::timeout(grace, &mut self.admin_task).await.is_err() {
            self.admin_task.abort();
        }
        if let Some((_, mut task)) = self.redirect.take() {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
        if let Some(writer) = self.writer.take() {
            // Joining the writer thread blocks; keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
        }
        if let Some(tracing) = self.shared.proxy.tracing.clone() {
            let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
        }
        // Last, so that it carries every request's counts, the events' and the spans'.
        if let Some(push) = self.metrics_push.take() {
            push.finish().await;
        }
        tracing::info!("stopped");
    }
}

/// A config now running, and the settings it changed that take effect only on restart.
pub(crate) struct Reloaded {
    pub(crate) generation: u64,
    /// The new config's fingerprint (see `lookout_config_info`).
    pub(crate) config_sha256: Arc<str>,
    pub(crate) on_restart: Vec<&'static str>,
}

impl Shared {
    pub(crate) async fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let source = self.source.clone();
        let registry = self.registry.clone();
        let loaded = tokio::task::spawn_blocking(move || source.load_into(registry)).await;
        let config = match loaded {
            Ok(result) => result,
            Err(join_error) => {
                tracing::error!(%join_error, "config loading panicked");
                self.reloads.failure.increment(1);
                return Err(ConfigErrors(Vec::new()));
            }
        };
        let config = config.inspect_err(|errors| {
            self.reloads.failure.increment(1);
            // The rejected config's routes and instances were registered while it was checked.
            self.proxy.routes.load().retain_in(&self.registry);
            tracing::error!("reload rejected, keeping the running config: {errors}");
        })?;
        self.reloads.success.increment(1);
        if let (Some(listener), Some(settings)) = (&self.tls, &config.tls) {
            listener.current.store(settings.clone());
        }
        let on_restart = self.changed_on_restart(&config);
        if !on_restart.is_empty() {
            tracing::warn!(
                ?on_restart,
                "these settings changed in the config; they take effect on restart"
            );
        }
        spawn_watchers(config.routes.upstreams());
        let config_sha256 = config.routes.fingerprint.clone();
        config.routes.retain_in(&self.registry);
        self.proxy.routes.swap(config.routes).retire();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        tracing::info!(generation, "config reloaded");
        Ok(Reloaded {
            generation,
            config_sha256,
            on_restart,
        })
    }

    /// The settings `config` changes against those the gateway started with, which it reads
    /// only at start.
    fn changed_on_restart(&self, config: &Config) -> Vec<&'static str> {
        let started = &self.started_limits;
        let limits = &config.routes.head_limits;
        let telemetry = Telemetry::of(config);
        let started_telemetry = &self.started_telemetry;
        [
            ("listeners", config.listeners != self.listeners),
            ("traces", telemetry.traces != started_telemetry.traces),
            (
                "metrics.otlp",
                telemetry.metrics_push != started_telemetry.metrics_push,
            ),
            (
                "access_log.otlp",
                telemetry.access_log != started_telemetry.access_log,
            ),
            ("tls", self.tls.is_some() != config.tls.is_some()),
            (
                "analytics",
                config.analytics.as_ref() != self.store.as_ref().map(Store::settings),
            ),
            (
                "limits.header_read_timeout",
                limits.header_read_timeout != started.header_read_timeout,
            ),
            ("limits.idle_timeout", limits.idle_timeout != started.idle_timeout),
            ("limits.send_timeout", limits.send_timeout != started.send_timeout),
            (
                "limits.max_connections",
                limits.max_connections != started.max_connections,
            ),
        ]
        .into_iter()
        .filter_map(|(setting, changed)| changed.then_some(setting))
        .collect()
    }
}

/// Serves the plain-HTTP redirect listener, when one is bound (config validation lets one be
/// configured only with TLS); its address and task.
fn spawn_redirect(
    bound: Option<(SocketAddr, TcpListener)>,
    tls: Option<&ListenerTls>,
    proxy_port: u16,
    stopped: &watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, JoinHandle<()>)>, StartError> {
    let (Some((configured, listener)), Some(tls)) = (bound, tls) else {
        return Ok(None);
    };
    let addr = local_addr(&listener, configured)?;
    let target = redirect_listener::Target {
        tls: tls.current.clone(),
        proxy_port,
    };
    let task = tokio::spawn(redirect_listener::serve(listener, target, stopped.clone()));
    Ok(Some((addr, task)))
}

/// Rolls the latency windows forward, and reads the process, every [`ROTATION`] until the
/// gateway stops.
async fn rotate_stats(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(ROTATION);
    ticks.tick().await;
    // The first reading of the process, so that the dashboard has its rates a rotation on.
    registry.read_process();
    loop {
        tokio::select! {
            _ = ticks.tick() => registry.rotate(),
            _ = stop.changed() => return,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

fn local_addr(listener: &TcpListener, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })
}

/// The event queue, and the writer thread feeding the access log and the store (none when both
/// are off).
fn start_event_pipeline(
    config: &Config,
) -> Result<(EventQueue, Option<WriterHandle>, Option<Store>), StartError> {
    let mut sinks: Vec<Box<dyn EventSink>> = Vec::with_capacity(3);
    if let Some(otlp) = &config.access_log_otlp {
        sinks.push(Box::new(OtlpLogSink::start(otlp, &config.registry)?));
    }
    match &config.access_log {
        AccessLogTarget::Off => {}
        AccessLogTarget::Stdout => sinks.push(Box::new(JsonLinesSink::new(std::io::stdout()))),
        AccessLogTarget::File(path) => {
            let file = AccessLogFile::open(path.clone()).map_err(|source| StartError::AccessLog {
                path: path.clone(),
                source,
            })?;
            sinks.push(Box::new(file));
        }
    }
    let store = match &config.analytics {
        Some(settings) => {
            let (store, sink) = Store::open(settings.clone())?;
            sinks.push(Box::new(sink));
            Some(store)
        }
        None => None,
    };
    if sinks.is_empty() {
        return Ok((EventQueue::off(), None, None));
    }
    let (queue, receiver) = EventQueue::bounded(config.event_queue_capacity);
    let writer = spawn_writer(receiver, sinks, config.writer_priority).map_err(StartError::Writer)?;
    Ok((queue, Some(writer), store))
}
