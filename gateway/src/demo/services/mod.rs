//! The demo's upstreams, as small axum apps: the books REST API (v1 and v2), a slower reviews
//! service, an inventory service that fails now and then, a static web front end, and a gRPC
//! health service (in-process demo only). `lookout
//! demo` runs them all in its own process; `lookout demo-service NAME` runs one on its own, so
//! the same binary (and container image) plays every role of a deployment.

mod backends;
mod books;
mod status;
mod web;

pub use backends::{inventory, reviews};
pub use books::{books, BOOK_COUNT};
pub use status::status;
pub use web::web;

use axum::Router;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The services `lookout demo-service` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// The books REST API, version 1: `/books`, `/books/{id}`.
    Books,
    /// The books REST API, version 2 (adds `isbn` and `api_version`).
    BooksV2,
    /// Reviews of a book, `/reviews/{id}`: slow (40 to 160 ms).
    Reviews,
    /// Stock of a book, `/inventory/{id}`: about one answer in ten is a 5xx, a few are slow.
    Inventory,
    /// The books web front end: a static page under `/app/` that calls the books API.
    Web,
}

impl Service {
    /// The service's app; `instance` names the process in the books' answers.
    pub fn router(self, instance: &str) -> Router {
        match self {
            Service::Books => books(instance, 1),
            Service::BooksV2 => books(instance, 2),
            Service::Reviews => reviews(),
            Service::Inventory => inventory(),
            Service::Web => web(),
        }
    }
}

/// Binds `addr` and serves `app` in the background; returns the bound address.
pub async fn spawn(app: Router, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "demo service stopped");
        }
    });
    Ok(bound)
}

/// `lookout demo-service`: serves one service on `listen` until SIGTERM or Ctrl-C, finishing
/// the requests in flight (as a Kubernetes pod is expected to).
pub async fn run_one(service: Service, listen: SocketAddr, instance: &str) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let name =
        clap::ValueEnum::to_possible_value(&service).map_or_else(String::new, |v| v.get_name().to_owned());
    println!("lookout demo-service {name} (instance {instance}) listening on http://{bound}");
    axum::serve(listener, service.router(instance))
        .with_graceful_shutdown(crate::cli::wait_for_shutdown_signal())
        .await?;
    Ok(())
}
