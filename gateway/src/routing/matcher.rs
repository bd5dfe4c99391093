//! Request matching on host, path (exact, prefix, template), method and headers.

use super::index::segments;
use crate::edge::cors::preflight_method;
use http::header::HeaderName;
use http::request::Parts;
use http::{HeaderValue, Method};

#[derive(Debug)]
pub(crate) struct RequestMatcher {
    pub(crate) host: Option<HostMatch>,
    pub(crate) path: PathMatch,
    /// Empty means any method but those of [`only_when_named`].
    pub(crate) methods: Vec<Method>,
    pub(crate) headers: Vec<HeaderCondition>,
}

#[derive(Debug)]
pub(crate) enum HostMatch {
    /// `api.example.com` (stored lower-case).
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the apex.
    Suffix(String),
}

#[derive(Debug)]
pub(crate) enum PathMatch {
    Any,
    Exact(String),
    /// Matches the prefix itself and anything below it: `/api` matches `/api` and `/api/x`, not
    /// `/apix` (a prefix ending in `/` matches anything that starts with it).
    Prefix(String),
    /// `/books/{id}`, `/files/{*rest}`; matched by `matchit`, the router axum uses. With the
    /// template as written.
    Template(matchit::Router<()>, String),
}

#[derive(Debug)]
pub(crate) struct HeaderCondition {
    pub(crate) name: HeaderName,
    /// `None`: the header only has to be present.
    pub(crate) value: Option<HeaderValue>,
}

/// Methods a route takes only when its `match.methods` names them: `TRACE` echoes the request
/// back, with the headers the gateway added for the upstream (forwarding, the consumer), and
/// `CONNECT` asks for a tunnel to wherever the client says, which is not a reverse proxy's job.
fn only_when_named(method: &Method) -> bool {
    *method == Method::TRACE || *method == Method::CONNECT
}

/// Values captured by a template, by name, borrowed from the request path.
pub(crate) type Params<'p> = Vec<(&'p str, &'p str)>;

impl RequestMatcher {
    /// A CORS preflight is for the method it asks about, so it finds the route that method
    /// would (and that route's CORS policy answers it).
    fn accepts_method(&self, request: &Parts) -> bool {
        self.methods.contains(&request.method)
            || preflight_method(&request.method, &request.headers).is_some_and(|m| self.methods.contains(&m))
    }

    /// Returns the template captures when the request matches.
    pub(crate) fn matches<'p>(
        &'p self,
        request: &Parts,
        host: Option<&str>,
        path: &'p str,
    ) -> Option<Params<'p>> {
        let accepted = if self.methods.is_empty() {
            !only_when_named(&request.method)
        } else {
            self.accepts_method(request)
        };
        if !accepted {
            return None;
        }
        if let Some(expected) = &self.host {
            if !expected.matches(host?) {
                return None;
            }
        }
        let all_headers = self.headers.iter().all(|condition| {
            let mut values = request.headers.get_all(&condition.name).iter();
            match &condition.value {
                None => values.next().is_some(),
                Some(expected) => values.any(|v| v == expected),
            }
        });
        if !all_headers {
            return None;
        }
        self.path.matches(path)
    }
}

impl HostMatch {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(name) => host.eq_ignore_ascii_case(name),
            HostMatch::Suffix(suffix) => {
                host.len() > suffix.len()
                    && host.is_char_boundary(host.len() - suffix.len())
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl PathMatch {
    /// The literal segments every path this matches starts with (`books` of `/books/{id}`,
    /// `api`, `v1` of the prefix `/api/v1/`); none for any path, the prefix `/`, or a template
    /// capturing its first segment.
    pub(crate) fn literal_segments(&self) -> Vec<&str> {
        match self {
            PathMatch::Any => Vec::new(),
            PathMatch::Exact(path) => segments(path).collect(),
            // Segment-bounded: `/api` and `/api/` take `/api` and what is below it.
            PathMatch::Prefix(prefix) => {
                let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
                segments(prefix).filter(|_| !prefix.is_empty()).collect()
            }
            PathMatch::Template(_, template) => segments(template)
                .take_while(|segment| !segment.contains(['{', '}']))
                .collect(),
        }
    }

    /// The template's captures when `path` matches (none for the other kinds).
    pub(crate) fn matches<'p>(&'p self, path: &'p str) -> Option<Params<'p>> {
        let matched = match self {
            PathMatch::Any => true,
            PathMatch::Exact(exact) => path == exact,
            PathMatch::Prefix(prefix) => {
                path.starts_with(prefix.as_str())
                    && (prefix.ends_with('/')
                        || path.len() == prefix.len()
                        || path.as_bytes()[prefix.len()] == b'/')
            }
            PathMatch::Template(router, _) => {
                let found = router.at(path).ok()?;
                return Some(found.params.iter().collect());
            }
        };
        matched.then(Vec::new)
    }
}
