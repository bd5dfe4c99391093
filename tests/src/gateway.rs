//! Starting a gateway for a test, from YAML, on loopback ports chosen by the OS.

use lookout_gateway::{ConfigSource, Gateway, StartOptions};
use std::time::Duration;

/// Starts a gateway from the `upstreams:`/`routes:` part of a config; listeners go on
/// `127.0.0.1:0` and the access log is off.
pub async fn start_gateway(body: &str) -> Gateway {
    let text = format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\n{body}"
    );
    start_gateway_with(ConfigSource::Inline {
        name: "test.yaml".into(),
        text,
    })
    .await
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
