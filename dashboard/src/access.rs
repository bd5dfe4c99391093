//! Who may see the admin listener: a bearer token (`Authorization: Bearer ...`) for scripts, or a
//! session cookie that the login form sets after checking the same token, for browsers. The
//! cookie is HttpOnly and SameSite=Strict, so other sites can neither read it nor make a browser
//! send it. Sessions live in memory and expire; a restart logs everyone out.

use axum::http::{header, HeaderMap};
use cookie::{Cookie, SameSite};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub(crate) const SESSION_COOKIE: &str = "lookout_session";
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at most; the oldest goes first, so a login loop cannot grow memory.
const MAX_SESSIONS: usize = 1_000;

pub struct Access {
    token: Option<Arc<str>>,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl Access {
    /// With no token, everyone may (the listener is then on loopback: the gateway refuses to
    /// start an exposed admin listener without a token).
    pub fn new(token: Option<Arc<str>>) -> Access {
        Access {
            token,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn required(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a request may reach the listener at all: with a token, any; without one (the
    /// listener is then on loopback), only one addressed to a loopback name, or with no `Host`
    /// (no browser). A web page in the operator's browser can point a name of its own at
    /// 127.0.0.1 (DNS rebinding) and read what the listener answers; the browser then sends
    /// that name as `Host`.
    pub fn admits_host(&self, headers: &HeaderMap) -> bool {
        if self.token.is_some() {
            return true;
        }
        headers
            .get(header::HOST)
            .is_none_or(|host| host.to_str().is_ok_and(is_loopback_name))
    }

    /// Whether a request with these headers may pass.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        if self.token.is_none() {
            return true;
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.is_some_and(|given| self.is_token(given)) {
            return true;
        }
        session_of(headers).is_some_and(|id| self.session_valid(&id))
    }

    pub(crate) fn is_token(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .is_some_and(|token| bool::from(given.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Starts a session; the `Set-Cookie` value that carries it.
    pub(crate) fn start_session(&self) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|_, started| now.duration_since(*started) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(id.clone(), now);
        session_cookie(id, SESSION_LIFETIME)
    }

    /// Ends the session these headers carry; the `Set-Cookie` value that clears it.
    pub(crate) fn end_session(&self, headers: &HeaderMap) -> String {
        if let Some(id) = session_of(headers) {
            self.sessions.lock().remove(&id);
        }
        session_cookie(String::new(), Duration::ZERO)
    }

    fn session_valid(&self, id: &str) -> bool {
        self.sessions
            .lock()
            .get(id)
            .is_some_and(|started| started.elapsed() < SESSION_LIFETIME)
    }
}

/// `localhost`, a name under `.localhost` (browsers resolve them to loopback themselves, RFC
/// 6761) or a loopback address, with any port.
fn is_loopback_name(host_header: &str) -> bool {
    let Ok(authority) = host_header.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let host = authority.host();
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let address = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name.ends_with(".localhost")
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn session_cookie(value: String, max_age: Duration) -> String {
    Cookie::build((SESSION_COOKIE, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
        .build()
        .to_string()
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, header::HeaderValue::from_static(host));
        headers
    }

    #[test]
    fn without_a_token_only_loopback_names_are_admitted() {
        let open = Access::new(None);
        for host in [
            "127.0.0.1:9901",
            "localhost",
            "LocalHost.:9901",
            "app.localhost",
            "[::1]:9901",
            "127.3.2.1",
        ] {
            assert!(open.admits_host(&with_host(host)), "{host}");
        }
        for host in [
            "evil.example:9901",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]",
            "a b",
        ] {
            assert!(!open.admits_host(&with_host(host)), "{host}");
        }
        assert!(open.admits_host(&HeaderMap::new()), "no Host: not a browser");
        let guarded = Access::new(Some("t".into()));
        assert!(
            guarded.admits_host(&with_host("evil.example")),
            "the token guards it instead"
        );
    }
}
