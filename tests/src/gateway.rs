//! Starting a gateway for a test, from YAML, on loopback ports chosen by the OS.

use lookout_gateway::{ConfigSource, Gateway, StartOptions};
use std::net::SocketAddr;
use std::time::Duration;

/// Starts a gateway from the `upstreams:`/`routes:` part of a config; listeners go on
/// `127.0.0.1:0`, and the access log and the analytics store are off unless `body` has an
/// `access_log:` or `analytics:` section.
pub async fn start_gateway(body: &str) -> Gateway {
    let off_unless_given = |section: &str, off: &str| match body.contains(&format!("{section}:")) {
        true => String::new(),
        false => format!("{section}: {off}\n"),
    };
    let access_log = off_unless_given("access_log", "{ path: off }");
    let analytics = off_unless_given("analytics", "{ store: off }");
    let text =
        format!("listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\n{access_log}{analytics}{body}");
    start_gateway_with(ConfigSource::Inline {
        name: "test.yaml".into(),
        text,
    })
    .await
}

/// The `upstreams:`/`routes:` of the commonest test setup: one upstream `svc` with the given
/// instance, one catch-all route `all`; `upstream_extra` and `route_extra` add fields to each
/// (e.g. `"outlier: { consecutive_failures: 2 }"`, `"timeout: 300ms"`).
pub fn single_upstream(addr: SocketAddr, upstream_extra: &str, route_extra: &str) -> String {
    let extra = |fields: &str| {
        if fields.is_empty() {
            String::new()
        } else {
            format!(", {fields}")
        }
    };
    format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{addr}\"]{} }}\nroutes:\n  - {{ name: all, upstream: svc{} }}\n",
        extra(upstream_extra),
        extra(route_extra)
    )
}

/// Starts a gateway in front of one upstream with a catch-all route (see [`single_upstream`]).
pub async fn start_gateway_to(addr: SocketAddr) -> Gateway {
    start_gateway(&single_upstream(addr, "", "")).await
}

/// Starts a gateway from any config source (e.g. a file, for reload tests).
pub async fn start_gateway_with(source: ConfigSource) -> Gateway {
    let config = source
        .load()
        .unwrap_or_else(|errors| panic!("test config is invalid: {errors}"));
    Gateway::start(config, source, StartOptions::default())
        .await
        .expect("gateway starts")
}

/// Polls `check` every 20 ms until it holds, for at most `limit`; returns whether it held.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Waits (at most 30 s) until the gateway's analytics store has written `count` events.
pub async fn wait_for_stored(gateway: &Gateway, count: usize) {
    let store = gateway.store().expect("the analytics store is on").clone();
    let written = wait_until(Duration::from_secs(30), || {
        let store = store.clone();
        async move { store.stats().events_written as usize >= count }
    })
    .await;
    assert!(written, "events written: {:?}", store.stats());
}
