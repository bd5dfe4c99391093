//! The proxy's errors and the one place that turns them into client responses: a status and a
//! stable JSON body, `{"error": {"code", "message", "request_id"}}`, never internal details.

use crate::edge::attack::Threat;
use http::header::HeaderValue;
use http::StatusCode;
use lookout_analytics::ErrorKind;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("no route matches this request")]
    NoRoute,
    #[error("upstream `{0}` has no healthy instance")]
    NoHealthyInstance(Arc<str>),
    #[error("upstream `{0}` has as many requests waiting for it as it takes (max_in_flight)")]
    UpstreamOverloaded(Arc<str>),
    #[error("upstream `{0}` could not be reached")]
    UpstreamUnreachable(Arc<str>),
    #[error("upstream `{0}` answered with a response that is not valid HTTP")]
    UpstreamInvalidResponse(Arc<str>),
    #[error("upstream `{0}` did not respond in time")]
    UpstreamTimeout(Arc<str>),
    #[error("the request could not be forwarded: {0}")]
    BadRequest(&'static str),
    #[error("the request body is larger than this route's limit of {0} bytes")]
    BodyTooLarge(u64),
    #[error("the request body's transfer coding is not supported: chunked is the only one")]
    UnsupportedTransferCoding,
    #[error("the request body could not be transformed: {0}")]
    InvalidBody(String),
    #[error("the upstream's response is larger than this route's transformation limit of {0} bytes")]
    ResponseTransformFailed(u64),
    #[error("too many requests: this route's rate limit is used up; see Retry-After")]
    RateLimited,
    #[error("the rate limit could not be checked and this route refuses requests until it can")]
    RateLimitUnavailable,
    #[error("{0}")]
    Unauthorized(&'static str, HeaderValue),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("the request target is longer than this gateway's limit of {0} bytes")]
    UriTooLong(usize),
    #[error("the request headers are larger than this gateway's limit of {0} bytes")]
    HeadersTooLarge(usize),
    #[error("the request body did not arrive in time: the client paused longer than this route allows")]
    BodyTimeout,
    #[error("the client closed the connection before sending its whole request body")]
    ClientGone,
    #[error("this route does not accept requests from the client's address")]
    IpDenied,
    #[error("CORS: {0}")]
    CorsRejected(&'static str),
    #[error("the request was refused by the attack filter: {0}")]
    AttackBlocked(Threat),
    #[error("composition call `{call}` failed: {reason}")]
    CompositionFailed {
        call: Arc<str>,
        reason: String,
        timed_out: bool,
    },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoHealthyInstance(_) | ProxyError::UpstreamOverloaded(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::UpstreamUnreachable(_) | ProxyError::UpstreamInvalidResponse(_) => {
                StatusCode::BAD_GATEWAY
            }
            ProxyError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
            ProxyError::ResponseTransformFailed(_) => StatusCode::BAD_GATEWAY,
            ProxyError::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::RateLimitUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Unauthorized(..) => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ProxyError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            // nginx's "client closed request": no one reads it, the record keeps it.
            ProxyError::ClientGone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ProxyError::IpDenied | ProxyError::CorsRejected(_) | ProxyError::AttackBlocked(_) => {
                StatusCode::FORBIDDEN
            }
            ProxyError::CompositionFailed { timed_out: true, .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::CompositionFailed { .. } => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable, machine-readable code clients can switch on.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoHealthyInstance(_) => "no_healthy_instance",
            ProxyError::UpstreamOverloaded(_) => "upstream_overloaded",
            ProxyError::UpstreamUnreachable(_) => "upstream_unreachable",
            ProxyError::UpstreamInvalidResponse(_) => "upstream_invalid_response",
            ProxyError::UpstreamTimeout(_) => "upstream_timeout",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BodyTooLarge(_) => "body_too_large",
            ProxyError::InvalidBody(_) => "invalid_body",
            ProxyError::UnsupportedTransferCoding => "unsupported_transfer_coding",
            ProxyError::ResponseTransformFailed(_) => "response_transform_failed",
            ProxyError::RateLimited => "rate_limited",
            ProxyError::RateLimitUnavailable => "rate_limit_unavailable",
            ProxyError::Unauthorized(..) => "unauthorized",
            ProxyError::Forbidden(_) => "forbidden",
            ProxyError::UriTooLong(_) => "uri_too_long",
            ProxyError::HeadersTooLarge(_) => "headers_too_large",
            ProxyError::BodyTimeout => "body_timeout",
            ProxyError::ClientGone => "client_aborted",
            ProxyError::IpDenied => "ip_denied",
            ProxyError::CorsRejected(_) => "cors_rejected",
            ProxyError::AttackBlocked(_) => "attack_blocked",
            ProxyError::CompositionFailed { .. } => "composition_failed",
        }
    }

    /// The edge policy that refused the request, for a refusal (`None` for other errors).
    pub(crate) fn blocked_by(&self) -> Option<&'static str> {
        match self {
            ProxyError::UriTooLong(_)
            | ProxyError::HeadersTooLarge(_)
            | ProxyError::BodyTooLarge(_)
            | ProxyError::BodyTimeout => Some("request_limits"),
            ProxyError::IpDenied => Some("ip_filter"),
            ProxyError::CorsRejected(_) => Some("cors"),
            ProxyError::Unauthorized(..) | ProxyError::Forbidden(_) => Some("auth"),
            ProxyError::AttackBlocked(_) => Some("attack_filter"),
            ProxyError::RateLimited | ProxyError::RateLimitUnavailable => Some("rate_limit"),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            ProxyError::NoRoute => ErrorKind::NoRoute,
            ProxyError::NoHealthyInstance(_) => ErrorKind::NoHealthyInstance,
            ProxyError::UpstreamOverloaded(_) => ErrorKind::UpstreamOverloaded,
            ProxyError::UpstreamUnreachable(_) => ErrorKind::UpstreamUnreachable,
            ProxyError::UpstreamInvalidResponse(_) => ErrorKind::UpstreamInvalidResponse,
            ProxyError::UpstreamTimeout(_) => ErrorKind::UpstreamTimeout,
            ProxyError::BadRequest(_) => ErrorKind::BadRequest,
            ProxyError::BodyTooLarge(_) => ErrorKind::BodyTooLarge,
            ProxyError::InvalidBody(_) | ProxyError::UnsupportedTransferCoding => ErrorKind::BadRequest,
            ProxyError::ResponseTransformFailed(_) => ErrorKind::TransformFailed,
            ProxyError::RateLimited => ErrorKind::RateLimited,
            ProxyError::RateLimitUnavailable => ErrorKind::RateLimitUnavailable,
            ProxyError::Unauthorized(..) => ErrorKind::Unauthorized,
            ProxyError::Forbidden(_) => ErrorKind::Forbidden,
            ProxyError::UriTooLong(_) => ErrorKind::UriTooLong,
            ProxyError::HeadersTooLarge(_) => ErrorKind::HeadersTooLarge,
            ProxyError::BodyTimeout => ErrorKind::BodyTimeout,
            ProxyError::ClientGone => ErrorKind::ClientAborted,
            ProxyError::IpDenied => ErrorKind::IpDenied,
            ProxyError::CorsRejected(_) => ErrorKind::CorsRejected,
            ProxyError::AttackBlocked(_) => ErrorKind::AttackBlocked,
            ProxyError::CompositionFailed { .. } => ErrorKind::CompositionFailed,
        }
    }

    pub(crate) fn body(&self, request_id: &str) -> Vec<u8> {
        let body = serde_json::json!({
            "error": { "code": self.code(), "message": self.to_string(), "request_id": request_id }
        });
        body.to_string().into_bytes()
    }
}
