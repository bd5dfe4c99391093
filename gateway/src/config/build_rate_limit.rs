//! Validation of `redis:` and of routes' `rate_limit:`.

use super::error::Problems;
use super::raw::{RawRateLimit, RawRedis, Text};
use super::values::duration;
use crate::ratelimit::{
    Backend, KeyKind, LimitCounters, OnBackendError, Policy, Quota, RateLimit, RedisBackend, RedisSettings,
};
use crate::stats::{Registry, RATE_LIMIT_BACKEND_ERRORS, RATE_LIMIT_DECISIONS};
use http::header::HeaderName;
use metrics::Label;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);

pub(super) fn build_redis(p: &mut Problems, raw: &RawRedis) -> Option<Arc<RedisBackend>> {
    let settings = RedisSettings {
        url: raw.url.trim().to_owned(),
        timeout: duration(p, "redis.timeout", raw.timeout.as_ref(), DEFAULT_REDIS_TIMEOUT),
    };
    match RedisBackend::new(&settings) {
        Ok(backend) => Some(Arc::new(backend)),
        Err(error) => {
            let message = format!("invalid Redis URL `{}`: {error}", settings.url);
            p.at(raw.url.span(), "redis.url", message);
            None
        }
    }
}

pub(super) fn build_rate_limit(
    p: &mut Problems,
    field: &str,
    route: &str,
    raw: &RawRateLimit,
    redis: Option<&Arc<RedisBackend>>,
    registry: &Registry,
) -> Option<Arc<RateLimit>> {
    // Every field is checked before giving up, so that one pass reports every problem.
    let rate = parse_rate(p, &format!("{field}.rate"), &raw.rate);
    let burst = match &raw.burst {
        Some(b) if **b == 0 => {
            p.at(b.span(), format!("{field}.burst"), "must be at least 1");
            None
        }
        Some(b) => Some(**b),
        None => rate.map(|(count, _)| count),
    };
    let key = build_key(p, &format!("{field}.key"), raw.key.as_ref());
    let on_error = on_error(p, &format!("{field}.on_redis_error"), raw.on_redis_error.as_ref());
    let quota = Quota {
        interval: rate?.1,
        burst: burst?,
    };
    let backend = match raw.cluster {
        Some(true) => {
            let Some(redis) = redis else {
                let message = "a cluster-wide limit needs the top-level `redis:` section";
                p.at(raw.rate.span(), format!("{field}.cluster"), message);
                return None;
            };
            Backend::Cluster {
                redis: redis.clone(),
                prefix: route.into(),
                on_error: on_error?,
            }
        }
        _ => Backend::Local(registry.local_limiter(route, quota)?),
    };
    Some(Arc::new(RateLimit {
        quota,
        key: key?,
        backend,
        policy: Policy::new(route, quota),
        counters: counters(registry, route),
    }))
}

/// `100/s`, `600/min`, `5000/h`, or a count per any duration (`10/30s`).
fn parse_rate(p: &mut Problems, field: &str, text: &Text) -> Option<(u32, Duration)> {
    let problem = |p: &mut Problems, why: &str| {
        let message = format!(
            "invalid rate `{}`: {why} (try e.g. `100/s` or `600/min`)",
            &**text
        );
        p.at(text.span(), field, message);
    };
    let Some((count, per)) = text.split_once('/') else {
        problem(p, "expected COUNT/PERIOD");
        return None;
    };
    let count: u32 = match count.trim().parse() {
        Ok(n) if n > 0 => n,
        _ => {
            problem(p, "the count must be a whole number above 0");
            return None;
        }
    };
    let period = match per.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => match humantime::parse_duration(other) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                problem(p, "unknown period");
                return None;
            }
        },
    };
    let interval = period / count;
    if interval < Duration::from_micros(1) {
        problem(p, "more than a million requests per second cannot be limited");
        return None;
    }
    Some((count, interval))
}

fn build_key(p: &mut Problems, field: &str, text: Option<&Text>) -> Option<KeyKind> {
    let Some(text) = text else {
        return Some(KeyKind::ClientIp);
    };
    match text.trim() {
        "client_ip" => Some(KeyKind::ClientIp),
        "route" => Some(KeyKind::Route),
        "consumer" => Some(KeyKind::Consumer),
        other => match other.strip_prefix("header:").map(HeaderName::try_from) {
            Some(Ok(name)) => Some(KeyKind::Header(name)),
            _ => {
                let message =
                    format!("unknown key `{other}`: expected client_ip, route, consumer or header:NAME");
                p.at(text.span(), field, message);
                None
            }
        },
    }
}

fn on_error(p: &mut Problems, field: &str, text: Option<&Text>) -> Option<OnBackendError> {
    match text.map(|t| t.trim()) {
        None | Some("allow") => Some(OnBackendError::Allow),
        Some("deny") => Some(OnBackendError::Deny),
        Some(other) => {
            let message = format!("unknown behaviour `{other}`: expected allow or deny");
            p.at(text?.span(), field, message);
            None
        }
    }
}

fn counters(registry: &Registry, route: &str) -> LimitCounters {
    let metrics = registry.metrics();
    let counter = |name, label: &'static str, value: &'static str| {
        let labels = vec![
            Label::new("http_route", route.to_owned()),
            Label::new(label, value),
        ];
        metrics.counter(name, labels)
    };
    LimitCounters {
        allowed: counter(RATE_LIMIT_DECISIONS, "decision", "allowed"),
        limited: counter(RATE_LIMIT_DECISIONS, "decision", "limited"),
        backend_error_allowed: counter(RATE_LIMIT_BACKEND_ERRORS, "fallback", "allow"),
        backend_error_denied: counter(RATE_LIMIT_BACKEND_ERRORS, "fallback", "deny"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::Problems;

    fn rate(text: &str) -> Option<(u32, Duration)> {
        let mut p = Problems::new("test.yaml".into());
        parse_rate(
            &mut p,
            "rate",
            &Text::new(marked_yaml::Span::new_blank(), text.to_owned()),
        )
    }

    #[test]
    fn rates_are_counts_per_period() {
        assert_eq!(rate("100/s"), Some((100, Duration::from_millis(10))));
        assert_eq!(rate("600/min"), Some((600, Duration::from_millis(100))));
        assert_eq!(rate("10/30s"), Some((10, Duration::from_secs(3))));
        for bad in ["100", "0/s", "x/s", "5/fortnight", "2000000/s"] {
            assert_eq!(rate(bad), None, "{bad}");
        }
    }
}
