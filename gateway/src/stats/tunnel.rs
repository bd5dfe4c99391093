//! Upgraded connections (WebSockets and other `Upgrade` tunnels) per route: how many are open,
//! how long each lasted, what crossed it and how it ended. A tunnel outlives its request, whose
//! event, span and latency figures end at the switch (status 101): these are the only figures of
//! the tunnel's life.

use super::prometheus::{self, Metrics};
use metrics::{Counter, Histogram, Label};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// How a tunnel ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TunnelClose {
    /// Both sides closed it (at the TCP level the upstream usually closes first, even when the
    /// client started a WebSocket's closing handshake, so which side did is not told).
    Closed,
    /// Nothing crossed it for the upstream's `read_timeout`: the gateway closed it.
    IdleTimeout,
    /// A side failed: a reset, or a write to a side already gone.
    Error,
}

impl TunnelClose {
    const ALL: [TunnelClose; 3] = [TunnelClose::Closed, TunnelClose::IdleTimeout, TunnelClose::Error];

    fn label(self) -> &'static str {
        match self {
            TunnelClose::Closed => "closed",
            TunnelClose::IdleTimeout => "idle_timeout",
            TunnelClose::Error => "error",
        }
    }
}

/// A closed tunnel's figures.
#[derive(Debug)]
pub(crate) struct TunnelEnd {
    pub(crate) close: TunnelClose,
    pub(crate) lifetime: Duration,
    pub(crate) to_upstream: u64,
    pub(crate) to_client: u64,
}

/// One route's tunnels. Their series are registered at the route's first tunnel, so routes that
/// never upgrade export none.
#[derive(Default)]
pub(super) struct TunnelStats {
    open: AtomicI64,
    series: OnceLock<TunnelSeries>,
}

struct TunnelSeries {
    /// By [`TunnelClose`], in the order of `ALL`.
    lifetime: Vec<Histogram>,
    to_upstream: Counter,
    to_client: Counter,
}

impl TunnelStats {
    pub(super) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn open(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub(super) fn closed(&self, end: &TunnelEnd, metrics: &Metrics, route: &str, upstream: &str) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let series = self
            .series
            .get_or_init(|| TunnelSeries::register(metrics, route, upstream));
        // `ALL` lists the reasons in declaration order, so a reason's discriminant is its index.
        series.lifetime[end.close as usize].record(end.lifetime.as_secs_f64());
        series.to_upstream.increment(end.to_upstream);
        series.to_client.increment(end.to_client);
    }
}

impl TunnelSeries {
    fn register(metrics: &Metrics, route: &str, upstream: &str) -> Self {
        let labels = |extra: Label| {
            vec![
                Label::new("http_route", route.to_owned()),
                Label::new("upstream", upstream.to_owned()),
                extra,
            ]
        };
        let bytes = |direction: &'static str| {
            metrics.counter(
                prometheus::TUNNEL_BYTES,
                labels(Label::new("direction", direction)),
            )
        };
        TunnelSeries {
            lifetime: TunnelClose::ALL
                .iter()
                .map(|close| {
                    metrics.histogram(
                        prometheus::TUNNEL_DURATION,
                        labels(Label::new("reason", close.label())),
                    )
                })
                .collect(),
            to_upstream: bytes("to_upstream"),
            to_client: bytes("to_client"),
        }
    }
}
