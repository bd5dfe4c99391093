//! What the gateway reads and writes of gRPC: the status a call ended with. A gRPC call that
//! fails still answers HTTP 200; its outcome is `grpc-status`, in the trailers (or, when the
//! call failed before any message, in the headers: a "trailers-only" response). Requests,
//! metrics and traces carry it, so failing calls are not counted as successes; and the
//! gateway's own refusals of a gRPC call are given in that form, with a code and a message.
//! It also reads the deadline a client gave its call (`grpc-timeout`).

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use lookout_analytics::GRPC_SERVER_ERRORS;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use std::time::Duration;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
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

/// The deadline a gRPC client gave its call, from `grpc-timeout`: up to 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as the gRPC over HTTP/2 spec writes it. A malformed value
/// is ignored, as gRPC servers do: the route's own timeouts still apply.
pub(crate) fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Gives the upstream what is left of the client's deadline: the time the gateway spent on the
/// call is not the service's to spend (gRPC's deadline propagation). In milliseconds, at least
/// one, or in seconds when that is over 8 digits.
pub(crate) fn set_remaining(headers: &mut HeaderMap, remaining: Duration) {
    let millis = remaining.as_millis().max(1);
    let value = match millis {
        ..=99_999_999 => format!("{millis}m"),
        _ => format!("{}S", remaining.as_secs().min(99_999_999)),
    };
    if let Ok(value) = HeaderValue::try_from(value) {
        headers.insert(GRPC_TIMEOUT, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn timeout(value: &'static str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(value));
        client_timeout(&headers)
    }

    #[test]
    fn a_clients_deadline_reads_in_each_unit_and_a_malformed_one_is_ignored() {
        assert_eq!(timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(timeout("7n"), Some(Duration::from_nanos(7)));
        for malformed in ["", "m", "100", "123456789m", "-5S", "1.5S", "10x", "5 S"] {
            assert_eq!(timeout(malformed), None, "{malformed:?}");
        }
        assert_eq!(client_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn what_is_left_of_a_deadline_is_written_in_milliseconds_or_seconds() {
        for (left, written, read) in [
            (Duration::from_micros(10), "1m", Duration::from_millis(1)),
            (Duration::from_millis(1850), "1850m", Duration::from_millis(1850)),
            (
                Duration::from_secs(200_000),
                "200000S",
                Duration::from_secs(200_000),
            ),
        ] {
            let mut headers = HeaderMap::new();
            set_remaining(&mut headers, left);
            assert_eq!(headers[GRPC_TIMEOUT], written);
            assert_eq!(client_timeout(&headers), Some(read));
        }
    }

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
