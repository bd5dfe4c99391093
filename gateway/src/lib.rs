//! The Lookout gateway: a reverse proxy (tokio + hyper) whose request path is an explicit
//! pipeline of phases — match route → policies → upstream → response → record — that ends, for
//! every request, in one structured event handed to the analytics pipeline.
//!
//! It must not block or wait on its hot path: no global locks, no blocking I/O, and analytics
//! only through a bounded queue that drops (and counts) what does not fit. Config strings are
//! compiled into typed structures at load time and never read while proxying.

mod admin_client;
mod analyze;
mod auth;
mod body;
mod cache;
pub mod cli;
mod compose;
mod compress;
pub mod config;
pub mod demo;
mod edge;
mod grpc;
mod metrics_push;
mod otlp_client;
mod otlp_logs;
mod probe;
mod proxy;
mod query;
mod ratelimit;
mod routing;
mod server;
pub mod stats;
mod tls;
mod traces;
mod transform;
mod upstream;

pub use config::{load_file, load_str, Config, ConfigError, ConfigErrors};
pub use server::{ConfigSource, Gateway, StartError, StartOptions};
pub use stats::Registry;
pub use traces::TraceSetupError;
