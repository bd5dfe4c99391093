//! What the gateway reads of gRPC: the status a call ended with. A gRPC call that fails still
//! answers HTTP 200; its outcome is `grpc-status`, in the trailers (or, when the call failed
//! before any message, in the headers: a "trailers-only" response). Requests, metrics and
//! traces carry it, so failing calls are not counted as successes.

use http::header::{HeaderMap, HeaderName, CONTENT_TYPE};
use lookout_analytics::GRPC_SERVER_ERRORS;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The codes gRPC defines, 0 (`OK`) to 16 (`UNAUTHENTICATED`).
pub(crate) const CODES: usize = 17;
/// What a peer's code outside the defined ones means, as gRPC's clients read it.
const UNKNOWN: u8 = 2;

/// A gRPC status code, 0 to 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GrpcStatus(u8);

impl GrpcStatus {
    /// The status in `grpc-status`, when there is one.
    pub(crate) fn in_headers(headers: &HeaderMap) -> Option<GrpcStatus> {
        let value = headers.get(GRPC_STATUS)?;
        let code = std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|text| text.parse::<u8>().ok())
            .filter(|&code| usize::from(code) < CODES)
            .unwrap_or(UNKNOWN);
        Some(GrpcStatus(code))
    }

    pub(crate) fn code(self) -> u8 {
        self.0
    }

    /// Whether the call failed on the server's side (see [`GRPC_SERVER_ERRORS`]).
    pub(crate) fn is_server_error(self) -> bool {
        GRPC_SERVER_ERRORS.contains(&self.0)
    }
}

/// Whether a message is gRPC's (`application/grpc`, `application/grpc+proto`, ...): only those
/// are looked at for a status.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn status(value: &'static str) -> Option<u8> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_STATUS, HeaderValue::from_static(value));
        GrpcStatus::in_headers(&headers).map(GrpcStatus::code)
    }

    #[test]
    fn codes_outside_the_defined_ones_read_as_unknown() {
        assert_eq!(status("0"), Some(0));
        assert_eq!(status("14"), Some(14));
        assert_eq!(status("17"), Some(2));
        assert_eq!(status("-1"), Some(2));
        assert_eq!(status("ok"), Some(2));
        assert_eq!(GrpcStatus::in_headers(&HeaderMap::new()), None);
    }

    #[test]
    fn server_errors_are_the_servers_codes_only() {
        let failed: Vec<u8> = (0..CODES as u8)
            .filter(|&c| GrpcStatus(c).is_server_error())
            .collect();
        assert_eq!(failed, [2, 4, 12, 13, 14, 15]);
    }
}
