//! CORS: which web origins may call a route from a browser. The gateway answers preflights
//! itself and stamps the CORS headers on the answers to allowed origins; for other origins it
//! adds nothing, so the browser keeps the response from the page.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;

static ACCESS_CONTROL_REQUEST_METHOD: HeaderName = HeaderName::from_static("access-control-request-method");
static ACCESS_CONTROL_REQUEST_HEADERS: HeaderName = HeaderName::from_static("access-control-request-headers");

#[derive(Debug)]
pub(crate) struct Cors {
    /// `None`: any origin (`*` in config).
    pub(crate) origins: Option<Box<[HeaderValue]>>,
    pub(crate) methods: Box<[Method]>,
    /// Lowercase request header names a page may send.
    pub(crate) headers: Box<[HeaderName]>,
    pub(crate) credentials: bool,
    /// Made at load: `Access-Control-Allow-Methods`, `-Allow-Headers`, `-Expose-Headers`,
    /// `-Max-Age`.
    pub(crate) allow_methods: HeaderValue,
    pub(crate) allow_headers: Option<HeaderValue>,
    pub(crate) expose_headers: Option<HeaderValue>,
    pub(crate) max_age: HeaderValue,
}

/// The method a preflight asks about, when the request is one (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`).
pub(crate) fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let asked = headers.get(&ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

/// Why a preflight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Origin,
    Method,
    Headers,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::Origin => "this origin may not call this route",
            Refusal::Method => "this method is not allowed from other origins",
            Refusal::Headers => "a requested header is not allowed from other origins",
        }
    }
}

impl Cors {
    pub(crate) fn allows_origin(&self, origin: &HeaderValue) -> bool {
        self.origins.as_ref().is_none_or(|list| {
            list.iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
        })
    }

    /// Checks a preflight from an allowed origin.
    pub(crate) fn check_preflight(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.methods.contains(method) {
            return Err(Refusal::Method);
        }
        let asked = headers
            .get_all(&ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|name| !name.is_empty());
        for name in asked {
            if !self.headers.iter().any(|h| h.as_str().eq_ignore_ascii_case(name)) {
                return Err(Refusal::Headers);
            }
        }
        Ok(())
    }

    /// The headers of the gateway's answer to an allowed preflight.
    pub(crate) fn preflight_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        self.give_origin(origin, headers);
        headers.insert(
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            self.allow_methods.clone(),
        );
        if let Some(allowed) = &self.allow_headers {
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, allowed.clone());
        }
        headers.insert(http::header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
    }

    /// The headers of an answer to an allowed origin's actual request.
    pub(crate) fn response_headers(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        self.give_origin(origin, headers);
        if let Some(exposed) = &self.expose_headers {
            headers.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
        }
    }

    fn give_origin(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        // The origin is echoed rather than `*` when credentials are allowed (browsers require it)
        // or only some origins are; caches must then keep answers per origin.
        if self.origins.is_none() && !self.credentials {
            headers.insert(
                http::header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else {
            headers.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.append(http::header::VARY, HeaderValue::from_static("Origin"));
        }
        if self.credentials {
            headers.insert(
                http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }
}
