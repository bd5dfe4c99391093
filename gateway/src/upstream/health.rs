//! Active health checks: a background task per upstream sends `GET <path>` to every instance at
//! an interval; a 2xx within the timeout passes. The task holds only a weak reference, so it ends
//! by itself when a reload retires the upstream.

use super::Upstream;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{Either, Full};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    /// Path and query, already validated as a URI path.
    pub(crate) path: http::uri::PathAndQuery,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
}

/// Starts the checks of every upstream that has them.
pub(crate) fn spawn_health_checks(upstreams: &[Arc<Upstream>]) -> Vec<JoinHandle<()>> {
    upstreams
        .iter()
        .filter(|u| u.health_check.is_some())
        .map(|u| tokio::spawn(check_loop(Arc::downgrade(u))))
        .collect()
}

async fn check_loop(upstream: Weak<Upstream>) {
    loop {
        let Some(current) = upstream.upgrade() else { return };
        let Some(check) = current.health_check.clone() else {
            return;
        };
        let probes = (0..current.instances.len()).map(|i| probe(&current, &check, i));
        futures_util::future::join_all(probes).await;
        drop(current);
        tokio::time::sleep(check.interval).await;
    }
}

async fn probe(upstream: &Upstream, check: &HealthCheck, index: usize) {
    let instance = &upstream.instances[index];
    let passed = tokio::time::timeout(check.timeout, probe_once(upstream, check, index))
        .await
        .unwrap_or(false);
    instance.record_check(passed, check.healthy_threshold, check.unhealthy_threshold);
}

/// One probe on a connection of its own: it also proves that new connections can be opened.
async fn probe_once(upstream: &Upstream, check: &HealthCheck, index: usize) -> bool {
    let instance = &upstream.instances[index];
    let Ok(request) = Request::get(Uri::from(check.path.clone()))
        .header(http::header::HOST, instance.authority.as_str())
        .header(http::header::USER_AGENT, "lookout-health-check")
        .body(Either::Right(Full::new(Bytes::new())))
    else {
        return false;
    };
    let Ok(mut sender) = instance.connect(upstream.connect_timeout).await else {
        return false;
    };
    matches!(sender.send_request(request).await, Ok(response) if response.status().is_success())
}
