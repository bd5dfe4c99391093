//! What the gateway reads and writes of gRPC: the status a call ended with. A gRPC call that
//! fails still answers HTTP 200; its outcome is `grpc-status`, in the trailers (or, when the
//! call failed before any message, in the headers: a "trailers-only" response). Requests,
//! metrics and traces carry it, so failing calls are not counted as successes; and the
//! gateway's own refusals of a gRPC call are given in that form, with a code and a message.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use lookout_analytics::GRPC_SERVER_ERRORS;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// `grpc-message` is percent-encoded: every byte outside printable ASCII, and `%` itself.
const MESSAGE_ESCAPES: &AsciiSet = &CONTROLS.add(b'%');

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

/// The code a gRPC client gets for a refusal the gateway would answer with `status`: the gRPC
/// spec's mapping of HTTP statuses, but for those whose meaning a gRPC code says better. A
/// timeout is `DEADLINE_EXCEEDED` and a rate limit or a size limit `RESOURCE_EXHAUSTED`, which
/// clients do not retry at once, where the spec's `UNAVAILABLE` invites them to (a timed-out
/// call may have run, and a limited client should slow down).
fn code_for(status: StatusCode) -> u8 {
    match status.as_u16() {
        400 => 13,                  // INTERNAL: the request is not one the gateway can forward
        401 => 16,                  // UNAUTHENTICATED
        403 => 7,                   // PERMISSION_DENIED
        404 => 12,                  // UNIMPLEMENTED: no route, no such method
        408 | 504 => 4,             // DEADLINE_EXCEEDED
        413 | 414 | 431 | 429 => 8, // RESOURCE_EXHAUSTED
        502 | 503 => 14,            // UNAVAILABLE
        _ => 2,                     // UNKNOWN
    }
}

/// Turns a refusal's headers into a trailers-only gRPC answer: `grpc-status` (by [`code_for`]
/// the refusal's HTTP status) and `grpc-message`, with `content-type: application/grpc`. The
/// answer's HTTP status is then 200, as gRPC requires of any answer that has a `grpc-status`.
pub(crate) fn refusal(status: StatusCode, message: &str, headers: &mut HeaderMap) {
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert(GRPC_STATUS, HeaderValue::from(u16::from(code_for(status))));
    let escaped = utf8_percent_encode(message, MESSAGE_ESCAPES).to_string();
    if let Ok(value) = HeaderValue::try_from(escaped) {
        headers.insert(GRPC_MESSAGE, value);
    }
}

/// Whether a request is a gRPC call (`application/grpc`, `application/grpc+proto`, ...): only
/// its response is looked at for a status in the headers, and only it is refused in gRPC form.
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
    fn refusals_get_a_code_and_an_escaped_message() {
        let mut headers = HeaderMap::new();
        refusal(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream `b` did not respond: 100% late\n",
            &mut headers,
        );
        assert_eq!(headers[CONTENT_TYPE], "application/grpc");
        assert_eq!(headers[GRPC_STATUS], "4");
        assert_eq!(
            headers[GRPC_MESSAGE],
            "upstream `b` did not respond: 100%25 late%0A"
        );
        let codes: Vec<u8> = [401, 403, 404, 429, 502, 503, 500]
            .map(|s| code_for(StatusCode::from_u16(s).expect("a status")))
            .into();
        assert_eq!(codes, [16, 7, 12, 8, 14, 14, 2]);
    }

    #[test]
    fn server_errors_are_the_servers_codes_only() {
        let failed: Vec<u8> = (0..CODES as u8)
            .filter(|&c| GrpcStatus(c).is_server_error())
            .collect();
        assert_eq!(failed, [2, 4, 12, 13, 14, 15]);
    }
}
