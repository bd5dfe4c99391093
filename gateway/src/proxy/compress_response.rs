//! Phase 7b: compress the response, on a route with `compress:`, when the client takes br or
//! gzip and the response is worth it (see [`crate::compress`]). Such a response loses its
//! `Content-Length` and `Accept-Ranges` (they describe the bytes before compression), and its
//! strong `ETag` becomes weak (the bytes differ, the meaning does not: RFC 9110 §8.8.1). Any
//! response that could have been compressed says `Vary: Accept-Encoding`, so that a shared
//! cache keeps the two apart. What the cache stores is the upstream's uncompressed answer.

use super::context::RequestContext;
use super::record::ResponseBody;
use crate::compress::{compress, Coding, CompressSlot, Compressed};
use http::header::{HeaderMap, HeaderValue, ACCEPT_RANGES, CONTENT_ENCODING, CONTENT_LENGTH, ETAG, VARY};
use http::Response;
use http_body_util::Either;

/// The body a client is sent: as it is, or compressed.
pub(crate) type SentBody = Either<ResponseBody, Compressed>;

pub(super) fn run(mut response: Response<ResponseBody>, ctx: &RequestContext) -> Response<SentBody> {
    let Some(negotiated) = &ctx.compress else {
        return response.map(Either::Left);
    };
    let policy = &negotiated.policy;
    if !policy.worth_it(response.status(), response.headers()) {
        return response.map(Either::Left);
    }
    vary_on_accept_encoding(response.headers_mut());
    let Some(coding) = negotiated.coding else {
        return response.map(Either::Left);
    };
    if negotiated.head {
        // The headers a GET's answer would have (RFC 9110 §9.3.2), and no body to compress.
        as_compressed(response.headers_mut(), coding);
        return response.map(Either::Left);
    }
    let Some(slot) = CompressSlot::take(policy) else {
        // As many as `max_in_flight` are being compressed: this one goes as it is (counted).
        return response.map(Either::Left);
    };
    as_compressed(response.headers_mut(), coding);
    policy.counters.responses[coding as usize].increment(1);
    response.map(|body| Either::Right(compress(body, coding, slot)))
}

/// A compressed answer's headers: its length and ranges were the uncompressed bytes'.
fn as_compressed(headers: &mut HeaderMap, coding: Coding) {
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    weaken_etag(headers);
}

fn vary_on_accept_encoding(headers: &mut HeaderMap) {
    let named = headers.get_all(VARY).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|name| name == "*" || name.eq_ignore_ascii_case("accept-encoding"))
        })
    });
    if !named {
        headers.append(VARY, HeaderValue::from_static("accept-encoding"));
    }
}

fn weaken_etag(headers: &mut HeaderMap) {
    let Some(strong) = headers
        .get(ETAG)
        .filter(|etag| etag.as_bytes().starts_with(b"\""))
    else {
        return;
    };
    let mut weak = b"W/".to_vec();
    weak.extend_from_slice(strong.as_bytes());
    if let Ok(weak) = HeaderValue::from_bytes(&weak) {
        headers.insert(ETAG, weak);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_names_accept_encoding_once() {
        let mut headers = HeaderMap::new();
        vary_on_accept_encoding(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        headers.insert(VARY, HeaderValue::from_static("Origin, Accept-Encoding"));
        vary_on_accept_encoding(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        headers.insert(VARY, HeaderValue::from_static("*"));
        vary_on_accept_encoding(&mut headers);
        assert_eq!(headers.get_all(VARY).iter().count(), 1);
        headers.insert(VARY, HeaderValue::from_static("origin"));
        vary_on_accept_encoding(&mut headers);
        assert_eq!(
            headers.get_all(VARY).iter().collect::<Vec<_>>(),
            ["origin", "accept-encoding"]
        );
    }

    #[test]
    fn a_strong_etag_becomes_weak_and_a_weak_one_stays() {
        let mut headers = HeaderMap::new();
        headers.insert(ETAG, HeaderValue::from_static("\"v1\""));
        weaken_etag(&mut headers);
        assert_eq!(headers[ETAG], "W/\"v1\"");
        weaken_etag(&mut headers);
        assert_eq!(headers[ETAG], "W/\"v1\"");
    }
}
