//! The demo's gRPC service: the standard gRPC health service (`tonic-health`), reporting on the
//! books, reviews and inventory services. Inventory flips between `SERVING` and `NOT_SERVING`
//! every 30 seconds, so the demo's gRPC calls have something to tell.

use axum::Router;
use std::time::Duration;
use tonic_health::server::health_reporter;
use tonic_health::ServingStatus;

/// How often inventory's reported status flips.
const FLIP_EVERY: Duration = Duration::from_secs(30);

/// The health service, answering gRPC calls over HTTP/2 (h2c) under `/grpc.health.v1.Health/`.
pub fn status() -> Router {
    let (reporter, service) = health_reporter();
    tokio::spawn(async move {
        for name in ["books", "reviews"] {
            reporter.set_service_status(name, ServingStatus::Serving).await;
        }
        let mut serving = true;
        loop {
            let status = if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            reporter.set_service_status("inventory", status).await;
            serving = !serving;
            tokio::time::sleep(FLIP_EVERY).await;
        }
    });
    Router::new().route_service("/grpc.health.v1.Health/{method}", service)
}
