//! A request's head, kept to send the request again when a connection lost it: an HTTP/2
//! stream refused or lost with its connection, or an HTTP/1.1 request sent on a pooled
//! connection the upstream had just closed.

use http::request::Parts;
use http::{HeaderMap, Method, Request, Uri, Version};

pub(crate) struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
}

impl Head {
    pub(crate) fn of(parts: &Parts) -> Self {
        Head::from_parts(
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        )
    }

    /// The head of an idempotent request without a body, which may be sent again as it was;
    /// `None` for any other (and for a protocol upgrade, whose connection the request hands over).
    pub(crate) fn of_bodiless_idempotent<B: http_body::Body>(request: &Request<B>) -> Option<Self> {
        let resendable = super::is_idempotent(request.method())
            && request.body().is_end_stream()
            && !request.headers().contains_key(http::header::UPGRADE);
        resendable.then(|| {
            Head::from_parts(
                request.method().clone(),
                request.uri().clone(),
                request.version(),
                request.headers().clone(),
            )
        })
    }

    fn from_parts(method: Method, uri: Uri, version: Version, headers: HeaderMap) -> Self {
        Head {
            method,
            uri,
            version,
            headers,
        }
    }

    pub(crate) fn is_idempotent(&self) -> bool {
        super::is_idempotent(&self.method)
    }

    pub(crate) fn request<B>(&self, body: B) -> Request<B> {
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}
