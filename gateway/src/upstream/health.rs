//! Active health checks: a background task per upstream probes every instance at an interval,
//! with `GET <path>` (a 2xx within the timeout passes) or, for gRPC services, the gRPC health
//! checking protocol (see [`super::grpc_health`]). The task holds only a weak reference, so it
//! ends by itself when a reload retires the upstream.

use super::grpc_health;
use super::Upstream;
use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{Either, Full};
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    pub(crate) probe: Probe,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    pub(crate) healthy_threshold: u32,
    pub(crate) unhealthy_threshold: u32,
}

/// What an instance is asked.
#[derive(Debug, Clone)]
pub(crate) enum Probe {
    /// `GET` of a path and query, already validated as a URI path; the statuses that pass.
    Http(http::uri::PathAndQuery, PassingStatuses),
    /// `grpc.health.v1.Health/Check` with this framed request (naming a service, or none).
    Grpc(Bytes),
}

/// The statuses that pass an HTTP check, as inclusive ranges (`2xx`: 200 to 299).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PassingStatuses(pub(crate) Box<[(u16, u16)]>);

impl Default for PassingStatuses {
    fn default() -> Self {
        PassingStatuses(Box::new([(200, 299)]))
    }
}

impl PassingStatuses {
    fn pass(&self, status: StatusCode) -> bool {
        let code = status.as_u16();
        self.0.iter().any(|&(low, high)| (low..=high).contains(&code))
    }
}

/// Starts the checks of every upstream that has them; each ends with its upstream.
pub(super) fn spawn_health_checks(upstreams: &[Arc<Upstream>]) {
    for upstream in upstreams.iter().filter(|u| u.health_check.is_some()) {
        tokio::spawn(check_loop(Arc::downgrade(upstream)));
    }
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
    let (method, target, body) = match &check.probe {
        Probe::Http(path, _) => (Method::GET, Uri::from(path.clone()), Bytes::new()),
        Probe::Grpc(body) => (
            Method::POST,
            Uri::from_static(grpc_health::CHECK_PATH),
            body.clone(),
        ),
    };
    let Ok(mut request) = Request::builder()
        .method(method)
        .uri(target)
        .header(http::header::USER_AGENT, "lookout-health-check")
        .body(Either::Right(Full::new(body)))
    else {
        return false;
    };
    // The instance's own name: a discovered one's, not its address, as a virtual-hosted
    // service answers only to its name.
    if let Some(host) = instance.check_host() {
        request.headers_mut().insert(http::header::HOST, host.clone());
    }
    if let Probe::Grpc(_) = check.probe {
        grpc_health::prepare(&mut request);
    }
    let Ok(mut sender) = instance.connect(upstream.connect_timeout).await else {
        return false;
    };
    let Ok(response) = sender.send_request(request).await else {
        return false;
    };
    match &check.probe {
        Probe::Http(_, passing) => passing.pass(response.status()),
        Probe::Grpc(_) => grpc_health::is_serving(response).await,
    }
}
