//! The command line: `run`, `check`, `demo`, `demo-service`, `health-check`, `proxy`, `analytics` and `analyze`.

use crate::config::{load_file, load_str, Config, ConfigErrors};
use crate::server::{ConfigSource, Gateway, StartOptions};
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "lookout",
    version,
    about = "Lookout: an observability-first API gateway"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads of the async runtime (default: one per core).
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// Proxy listener address (overrides the config).
    #[arg(long, global = true)]
    proxy_addr: Option<SocketAddr>,
    /// Admin listener address (overrides the config).
    #[arg(long, global = true)]
    admin_addr: Option<SocketAddr>,
    /// Format of the gateway's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a config file; SIGHUP, a file change or POST /admin/reload reload it.
    Run {
        #[arg(short, long, default_value = "lookout.yaml")]
        config: PathBuf,
    },
    /// Validate a config file and exit non-zero with every problem found.
    Check {
        #[arg(short, long, default_value = "lookout.yaml")]
        config: PathBuf,
    },
    /// Run the gateway with built-in demo upstreams and a traffic generator.
    Demo {
        /// Requests per second sent by the traffic generator (0 turns it off).
        #[arg(long, default_value_t = 40)]
        rps: u32,
    },
    /// Run one demo upstream on its own (for deployments: one image, every role).
    DemoService {
        service: crate::demo::services::Service,
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The instance name the books API puts in its answers (default: the host name, which
        /// is the pod's name on Kubernetes).
        #[arg(long)]
        instance: Option<String>,
    },
    /// Exit 0 when URL answers 2xx within the timeout: a container health check (the image has
    /// no shell or curl).
    HealthCheck {
        #[arg(default_value = crate::probe::DEFAULT_URL)]
        url: String,
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Print the digest of an API key, as `consumers[].api_keys` stores it.
    HashKey {
        /// The key; read from standard input when omitted (keeps it out of shell history).
        key: Option<String>,
    },
    /// A one-line reverse proxy to one upstream, without a config file.
    Proxy {
        /// The upstream, e.g. http://127.0.0.1:3000.
        #[arg(long)]
        to: String,
        /// Where to listen (default 127.0.0.1:8080).
        #[arg(long)]
        from: Option<SocketAddr>,
    },
    /// Work with an analytics store.
    #[command(subcommand)]
    Analytics(AnalyticsCommand),
    /// The dashboard's analyses over a store file, for scripts and CI gates.
    #[command(subcommand)]
    Analyze(AnalyzeCommand),
}

#[derive(Debug, Subcommand)]
enum AnalyzeCommand {
    /// Anomalies in each route's request rate, 5xx ratio and p99 latency per minute.
    Anomalies {
        /// The store's DuckDB file.
        #[arg(long)]
        store: PathBuf,
        /// How far back from the store's latest request to judge (e.g. 30m, 6h).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        since: Duration,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A route's canary / A-B verdict. Exit code: 0 promote, 2 roll back, 3 keep watching.
    Canary {
        /// A store's DuckDB file (one no gateway has open, as a copy).
        #[arg(long, required_unless_present = "admin")]
        store: Option<PathBuf>,
        /// Or a running gateway's admin listener, e.g. http://127.0.0.1:9901.
        #[arg(long, conflicts_with = "store")]
        admin: Option<String>,
        /// The admin token, for `--admin`.
        #[arg(long, env = "LOOKOUT_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The route whose variants are compared.
        #[arg(long)]
        route: String,
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        since: Duration,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AnalyticsCommand {
    /// Write every hour of a store (not open in a running gateway) as Hive-style Parquet
    /// partitions, as a gateway with `analytics.fleet` does for closed hours.
    Export {
        /// The store's DuckDB file.
        #[arg(long)]
        store: PathBuf,
        /// The fleet directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// The replica name for the files and the `replica` column (default: the host name).
        #[arg(long)]
        replica: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match &cli.command {
        Command::Check { config } => return check(config),
        Command::HealthCheck { url, timeout } => return crate::probe::health_check(url, *timeout),
        Command::HashKey { key } => return hash_key(key.as_deref()),
        Command::Analytics(AnalyticsCommand::Export { store, out, replica }) => {
            return export(store, out, replica.as_deref())
        }
        Command::Analyze(AnalyzeCommand::Anomalies { store, since, json }) => {
            return crate::analyze::anomalies(store, *since, *json)
        }
        Command::Analyze(AnalyzeCommand::Canary {
            store,
            admin,
            token,
            route,
            since,
            json,
        }) => {
            let source = match (store, admin) {
                (Some(store), _) => crate::analyze::Source::Store(store),
                (None, admin) => crate::analyze::Source::Admin {
                    url: admin.as_deref().unwrap_or_default(),
                    token: token.as_deref(),
                },
            };
            return crate::analyze::canary(source, route, *since, *json);
        }
        _ => {}
    }
    let runtime = match build_runtime(cli.workers) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match load_file(path) {
        Ok(config) => {
            println!(
                "{}: ok ({} routes, {} upstreams)",
                path.display(),
                config.routes.len(),
                config.routes.upstreams().len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn export(store: &Path, out: &Path, replica: Option<&str>) -> ExitCode {
    let replica = replica.map_or_else(crate::config::default_replica, str::to_owned);
    match lookout_analytics::export_store(store, out, &replica) {
        Ok(partitions) => {
            let requests: u64 = partitions.iter().map(|p| p.requests).sum();
            println!(
                "exported {} hours ({requests} requests) from {} to {}",
                partitions.len(),
                store.display(),
                out.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A file-size limit (`ulimit -f`) reached by the analytics store must fail that write, which
/// the store survives, not kill the proxy: SIGXFSZ's default action is to terminate. Handling
/// the signal turns it into an EFBIG error from the write.
fn survive_file_size_limit() {
    let kind = tokio::signal::unix::SignalKind::from_raw(nix::sys::signal::Signal::SIGXFSZ as i32);
    match tokio::signal::unix::signal(kind) {
        Ok(mut signals) => {
            tokio::spawn(async move {
                while signals.recv().await.is_some() {
                    tracing::warn!("a write went past the file-size limit (SIGXFSZ); it fails instead");
                }
            });
        }
        Err(error) => tracing::warn!(%error, "cannot handle SIGXFSZ"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    survive_file_size_limit();
    let overrides = Overrides {
        proxy: cli.proxy_addr,
        admin: cli.admin_addr,
    };
    match cli.command {
        Command::Run { config: path } => {
            let source = ConfigSource::File(path);
            let options = StartOptions {
                reload_on_sighup: true,
                watch_config_file: true,
            };
            serve(source, overrides, options).await
        }
        Command::Proxy { to, from } => {
            let overrides = Overrides {
                proxy: from.or(overrides.proxy),
                ..overrides
            };
            serve(
                one_line_proxy(&to)?,
                overrides,
                StartOptions {
                    reload_on_sighup: true,
                    ..Default::default()
                },
            )
            .await
        }
        Command::Demo { rps } => crate::demo::run(rps, overrides.proxy, overrides.admin).await,
        Command::DemoService {
            service,
            listen,
            instance,
        } => {
            let instance = instance.unwrap_or_else(crate::config::default_replica);
            crate::demo::services::run_one(service, listen, &instance).await
        }
        Command::Check { .. }
        | Command::HealthCheck { .. }
        | Command::HashKey { .. }
        | Command::Analytics(_)
        | Command::Analyze(_) => Ok(()),
    }
}

/// `lookout hash-key`: the key's `sha256:` digest on standard output.
fn hash_key(key: Option<&str>) -> ExitCode {
    let key = match key {
        Some(key) => key.to_owned(),
        None => {
            let mut line = String::new();
            if let Err(error) = std::io::stdin().read_line(&mut line) {
                eprintln!("cannot read the key from standard input: {error}");
                return ExitCode::FAILURE;
            }
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    if key.is_empty() {
        eprintln!("the key is empty");
        return ExitCode::FAILURE;
    }
    println!("{}", crate::auth::KeyHash::of(key.as_bytes()));
    ExitCode::SUCCESS
}

/// Listener addresses given on the command line.
#[derive(Debug, Clone, Copy)]
struct Overrides {
    proxy: Option<SocketAddr>,
    admin: Option<SocketAddr>,
}

async fn serve(source: ConfigSource, overrides: Overrides, options: StartOptions) -> anyhow::Result<()> {
    let config = apply(source.load().map_err(config_error)?, overrides);
    let gateway = Gateway::start(config, source, options).await?;
    println!(
        "lookout: proxy on http://{}, admin on http://{}",
        gateway.proxy_addr(),
        gateway.admin_addr()
    );
    wait_for_shutdown_signal().await;
    gateway.shutdown().await;
    Ok(())
}

fn apply(mut config: Config, overrides: Overrides) -> Config {
    config.listeners.proxy = overrides.proxy.unwrap_or(config.listeners.proxy);
    config.listeners.admin = overrides.admin.unwrap_or(config.listeners.admin);
    config
}

/// The config of `lookout proxy --to URL`: one upstream, one catch-all route, access log on
/// stdout, an in-memory analytics store, and traces to [`otlp_endpoint_from_env`] when set.
fn one_line_proxy(to: &str) -> anyhow::Result<ConfigSource> {
    let mut config = serde_json::json!({
        "upstreams": [{"name": "upstream", "instances": [to]}],
        "routes": [{"name": "all", "upstream": "upstream"}],
        "analytics": {"store": "memory"},
    });
    if let Some(endpoint) = otlp_endpoint_from_env() {
        config["traces"] = traces_section(&endpoint);
    }
    // JSON is YAML, and building it with serde_json quotes the user's input correctly.
    let text = config.to_string();
    load_str("--to", &text).map_err(config_error)?;
    Ok(ConfigSource::Inline {
        name: "--to".into(),
        text,
    })
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` (the OpenTelemetry SDKs' own variable), where the configs made
/// without a file (`proxy`, `demo`) send traces; `None` when it is not set or empty (an empty
/// variable counts as unset, as the OpenTelemetry specification says).
pub(crate) fn otlp_endpoint_from_env() -> Option<String> {
    std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
}

/// The `traces` section of those configs: every request traced, over gRPC, to `endpoint`, with
/// `x-trace-id` in the answers so a request can be looked up. JSON, which is YAML too, so the
/// user's endpoint comes out quoted.
pub(crate) fn traces_section(endpoint: &str) -> serde_json::Value {
    serde_json::json!({"endpoint": endpoint, "trace_id_header": true})
}

fn config_error(errors: ConfigErrors) -> anyhow::Error {
    anyhow::anyhow!("{errors}")
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn wait_for_shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// One worker means a current-thread runtime: the same single thread doing all the work, without
/// the work-stealing machinery (atomics, cross-thread wakeups) that only pays off with several.
fn build_runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n.max(1));
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
