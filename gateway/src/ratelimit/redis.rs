//! The cluster-wide limiter: GCRA in a Lua script, run atomically by Redis on Redis's clock,
//! so replicas with skewed clocks still share one budget exactly.

use super::key::LimitKey;
use super::{Decision, Quota};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;
use tokio::sync::OnceCell;

/// Each key holds its theoretical arrival time (TAT) in microseconds of Redis's clock. A request
/// is allowed when the TAT it would leave is at most `burst` intervals ahead of now.
/// Returns `{allowed, remaining, retry_after_us, reset_us}`. Numbers are written with `%.0f`:
/// Lua's default conversion keeps 14 digits, fewer than a timestamp in microseconds has.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allowed_at = next_tat - interval * burst
if now < allowed_at then
  return {0, 0, allowed_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, math.floor((now + interval * burst - next_tat) / interval), 0, next_tat - now}
";

/// Where cluster-wide limits are kept (`redis:` in the config).
#[derive(Debug, Clone)]
pub(crate) struct RedisSettings {
    pub(crate) url: String,
    /// The longest a limit check waits for Redis before failing open or closed.
    pub(crate) timeout: Duration,
}

/// One gateway's connection to Redis, made on first use and re-made by the connection manager
/// after failures.
pub(crate) struct RedisBackend {
    client: redis::Client,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
    script: redis::Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

impl RedisBackend {
    /// Checks the URL; connects later, on the first request that needs Redis.
    pub(crate) fn new(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        Ok(RedisBackend {
            client: redis::Client::open(settings.url.as_str())?,
            timeout: settings.timeout,
            connection: OnceCell::new(),
            script: redis::Script::new(GCRA),
        })
    }

    async fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let connect = || async {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(self.timeout))
                .set_number_of_retries(1);
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
        };
        self.connection.get_or_try_init(connect).await.cloned()
    }

    pub(crate) async fn check(
        &self,
        prefix: &str,
        key: &LimitKey,
        quota: Quota,
    ) -> Result<Decision, BackendError> {
        let redis_key = [
            b"lookout:ratelimit:",
            prefix.as_bytes(),
            b":",
            &key.redis_suffix(),
        ]
        .concat();
        let run = async {
            let mut connection = self.connection().await?;
            self.script
                .key(redis_key)
                .arg(quota.interval.as_micros() as u64)
                .arg(quota.burst)
                .invoke_async::<(u8, u32, u64, u64)>(&mut connection)
                .await
        };
        let (allowed, remaining, retry_after_us, reset_us) =
            tokio::time::timeout(self.timeout, run)
                .await
                .map_err(|_| BackendError::Timeout(self.timeout))??;
        Ok(Decision {
            allowed: allowed == 1,
            remaining,
            reset: Duration::from_micros(reset_us),
            retry_after: Duration::from_micros(retry_after_us),
        })
    }
}
