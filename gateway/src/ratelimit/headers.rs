//! The IETF httpapi rate-limit headers (draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy`
//! says the quota (`q` requests per `w` seconds), `RateLimit` what is left (`r`) and when the
//! quota is whole again (`t`, seconds). On a 429, `Retry-After` says when to come back.

use super::{Decision, Quota};
use http::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use std::time::Duration;

pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// A route's policy, as the headers name and state it; made once, at load.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    /// A structured-field string: the route's name, quoted.
    name: Box<str>,
    header: HeaderValue,
}

impl Policy {
    pub(crate) fn new(route: &str, quota: Quota) -> Self {
        let bare: String = route
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
            .collect();
        let name = format!("\"{bare}\"");
        let value = format!("{name};q={};w={}", quota.burst, seconds_up(quota.window()));
        let header = HeaderValue::try_from(value).unwrap_or(HeaderValue::from_static("\"route\""));
        Policy {
            name: name.into(),
            header,
        }
    }
}

/// Adds `RateLimit-Policy`, `RateLimit`, and `Retry-After` when the request was refused.
pub(crate) fn write(headers: &mut HeaderMap, policy: &Policy, decision: &Decision) {
    let state = format!(
        "{};r={};t={}",
        policy.name,
        decision.remaining,
        seconds_up(decision.reset)
    );
    if let Ok(value) = HeaderValue::try_from(state) {
        headers.insert(RATELIMIT.clone(), value);
    }
    headers.insert(RATELIMIT_POLICY.clone(), policy.header.clone());
    if !decision.allowed {
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from(seconds_up(decision.retry_after).max(1)),
        );
    }
}

/// Whole seconds, rounded up: a client that waits this long is never too early.
fn seconds_up(duration: Duration) -> u64 {
    duration.as_micros().div_ceil(1_000_000) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_draft() {
        let quota = Quota {
            interval: Duration::from_millis(100),
            burst: 20,
        };
        let policy = Policy::new("search", quota);
        assert_eq!(policy.header, "\"search\";q=20;w=2");
        let mut headers = HeaderMap::new();
        let refused = Decision {
            allowed: false,
            remaining: 0,
            reset: Duration::from_millis(2001),
            retry_after: Duration::from_millis(40),
        };
        write(&mut headers, &policy, &refused);
        assert_eq!(headers["ratelimit"], "\"search\";r=0;t=3");
        assert_eq!(headers["retry-after"], "1");
    }
}
