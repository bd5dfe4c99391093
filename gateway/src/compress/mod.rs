//! Response compression, on routes that ask for it (`compress:`): the route's policy, which
//! coding a client takes (`Accept-Encoding`, RFC 9110 §12.5.3), which responses are worth
//! compressing, and the compressing body ([`body`]).
//!
//! Only text-like media types are compressed (images and archives are compressed already), and
//! never an event stream or a gRPC call, whose messages a compressor would hold back until its
//! buffer fills. On equal quality zstd is preferred (about as small as brotli for a fraction of
//! its CPU), then brotli, then gzip.

mod body;
mod negotiate;

pub(crate) use body::{compress, Compressed};
pub(crate) use negotiate::Coding;

use http::header::{HeaderMap, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, StatusCode};
use metrics::Counter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What a route compresses.
#[derive(Debug)]
pub(crate) struct CompressPolicy {
    /// Responses declared shorter are sent as they are (a length unknown is compressed).
    pub(crate) min_size: u64,
    pub(crate) types: Box<[MediaRange]>,
    /// The most responses compressed at once; more are sent as they are. Each holds its
    /// encoder's state (140 to 750 KiB) until it ends, so slow clients would otherwise hold
    /// memory without bound.
    pub(crate) max_in_flight: usize,
    /// Shared by the routes that take `max_in_flight` from the top-level `compress:`, which
    /// bounds them together; a route's own is its own.
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) levels: Levels,
    pub(crate) counters: CompressCounters,
}

/// How hard each coding compresses: more CPU per response for fewer bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Levels {
    /// 1 to 9 (zlib's, and nginx's `gzip_comp_level`).
    pub(crate) gzip: u32,
    /// Brotli's quality, 0 to 11.
    pub(crate) br: u32,
    /// 1 to 19 (zstd's levels past 19 need windows larger than the 512 KiB kept here).
    pub(crate) zstd: u32,
}

impl Default for Levels {
    /// zlib's default, brotli's quality as CDNs compress on the fly (its top quality costs some
    /// fifty times the CPU for a few percent), and zstd's default.
    fn default() -> Self {
        Levels {
            gzip: 6,
            br: 4,
            zstd: 3,
        }
    }
}

/// A response being compressed: counted in its policy's `in_flight` until dropped.
pub(crate) struct CompressSlot(Arc<CompressPolicy>);

impl CompressSlot {
    /// `None`, counted, when `max_in_flight` responses are being compressed already.
    pub(crate) fn take(policy: &Arc<CompressPolicy>) -> Option<Self> {
        let before = policy.in_flight.fetch_add(1, Ordering::Relaxed);
        // Taken first, so that a refusal gives its count back when dropped.
        let slot = CompressSlot(policy.clone());
        if before >= policy.max_in_flight {
            policy.counters.at_limit.increment(1);
            return None;
        }
        Some(slot)
    }
}

impl Drop for CompressSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `lookout_responses_compressed_total` by coding, and the bytes that went into and came out
/// of the compressor: how much a route's compression saves.
#[derive(Debug)]
pub(crate) struct CompressCounters {
    /// By [`Coding`], in its order.
    pub(crate) responses: [Counter; Coding::ALL.len()],
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    /// Responses sent as they are because `max_in_flight` were being compressed.
    pub(crate) at_limit: Counter,
}

/// A media type a route compresses: `text/html`, `text/*` or `application/*+json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MediaRange {
    kind: Box<str>,
    subtype: Subtype,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Subtype {
    Any,
    Exactly(Box<str>),
    /// `*+json`: any subtype with that structured syntax suffix.
    Suffix(Box<str>),
}

/// Compressed by default, as nginx's and Traefik's lists: text and the text-based formats of
/// the web.
pub(crate) const DEFAULT_TYPES: [&str; 7] = [
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
];

impl MediaRange {
    /// `type/subtype`, `type/*` or `type/*+suffix`; `None` when it is none of them.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (kind, subtype) = text
            .trim()
            .to_ascii_lowercase()
            .split_once('/')
            .map(|(k, s)| (k.to_owned(), s.to_owned()))?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        if !token(&kind) {
            return None;
        }
        let subtype = match subtype.as_str() {
            "*" => Subtype::Any,
            s => match s.strip_prefix("*+") {
                Some(suffix) if token(suffix) => Subtype::Suffix(suffix.into()),
                None if token(s) => Subtype::Exactly(s.into()),
                _ => return None,
            },
        };
        Some(MediaRange {
            kind: kind.into(),
            subtype,
        })
    }

    /// Whether `media_type` (without parameters, in any case) is in this range.
    fn covers(&self, media_type: &str) -> bool {
        let Some((kind, subtype)) = media_type.split_once('/') else {
            return false;
        };
        kind.eq_ignore_ascii_case(&self.kind)
            && match &self.subtype {
                Subtype::Any => true,
                Subtype::Exactly(exact) => subtype.eq_ignore_ascii_case(exact),
                Subtype::Suffix(suffix) => subtype
                    .rsplit_once('+')
                    .is_some_and(|(_, s)| s.eq_ignore_ascii_case(suffix)),
            }
    }
}

/// A route's compression for one request: its policy, and the coding the client takes
/// (`None`: it takes neither, and gets the response as it is).
#[derive(Debug)]
pub(crate) struct Negotiated {
    pub(crate) policy: Arc<CompressPolicy>,
    pub(crate) coding: Option<Coding>,
    /// A HEAD: its answer has no body to compress, but the headers a GET's would have.
    pub(crate) head: bool,
}

impl Negotiated {
    pub(crate) fn new(policy: &Arc<CompressPolicy>, method: &Method, headers: &HeaderMap) -> Self {
        Negotiated {
            policy: policy.clone(),
            coding: negotiate::preferred(headers),
            head: method == Method::HEAD,
        }
    }
}

#[cfg(test)]
impl CompressPolicy {
    /// The default types, a `min_size` of 1 KiB, two at once, and counters nobody reads.
    pub(crate) fn for_tests() -> Arc<Self> {
        Self::for_tests_at(Levels::default())
    }

    /// As [`CompressPolicy::for_tests`], at `levels`.
    pub(crate) fn for_tests_at(levels: Levels) -> Arc<Self> {
        let metrics = crate::stats::Metrics::default();
        Arc::new(CompressPolicy {
            min_size: 1024,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| MediaRange::parse(t))
                .collect(),
            max_in_flight: 2,
            in_flight: Arc::default(),
            levels,
            counters: CompressCounters {
                responses: Coding::ALL.map(|_| metrics.counter("r", vec![])),
                bytes_in: metrics.counter("i", vec![]),
                bytes_out: metrics.counter("o", vec![]),
                at_limit: metrics.counter("l", vec![]),
            },
        })
    }
}

impl CompressPolicy {
    /// Whether a response would be compressed for a client that takes a coding: then its
    /// `Vary` names `Accept-Encoding`, whichever this client takes.
    pub(crate) fn worth_it(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        let bodiless = status.is_informational()
            || matches!(
                status,
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED | StatusCode::PARTIAL_CONTENT
            );
        if bodiless || headers.contains_key(CONTENT_ENCODING) || no_transform(headers) {
            return false;
        }
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length < self.min_size) {
            return false;
        }
        let Some(media_type) = media_type(headers) else {
            return false;
        };
        !is_streamed(media_type) && self.types.iter().any(|range| range.covers(media_type))
    }
}

/// The response's media type, without its parameters (read in place: this runs per response).
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim())
}

/// An event stream or a gRPC call: messages a compressor would hold back until its buffer fills.
fn is_streamed(media_type: &str) -> bool {
    const GRPC: &str = "application/grpc";
    media_type.eq_ignore_ascii_case("text/event-stream")
        || media_type
            .get(..GRPC.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(GRPC))
}

/// `Cache-Control: no-transform`: the origin asks that the body reach the client as it is.
fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|directive| directive.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|&(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn at_most_max_in_flight_responses_are_compressed_at_once() {
        let policy = CompressPolicy::for_tests();
        let first = CompressSlot::take(&policy).expect("a slot");
        let second = CompressSlot::take(&policy).expect("a slot");
        assert!(CompressSlot::take(&policy).is_none(), "two at once");
        drop(first);
        let third = CompressSlot::take(&policy).expect("one was given back");
        assert_eq!(policy.in_flight.load(Ordering::Relaxed), 2);
        drop((second, third));
        assert_eq!(policy.in_flight.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn media_ranges_are_types_wildcards_and_suffixes() {
        let ranges =
            ["text/*", "application/json", "application/*+json"].map(|t| MediaRange::parse(t).expect(t));
        let covered = |media_type: &str| ranges.iter().any(|r| r.covers(media_type));
        for yes in [
            "text/html",
            "text/css",
            "application/json",
            "application/problem+json",
        ] {
            assert!(covered(yes), "{yes}");
        }
        for no in [
            "application/jsonx",
            "image/png",
            "application/octet-stream",
            "texts/html",
            "json",
        ] {
            assert!(!covered(no), "{no}");
        }
        for wrong in ["text", "/html", "text/", "*/*+", "te xt/html", "text/ht ml"] {
            assert_eq!(MediaRange::parse(wrong), None, "{wrong}");
        }
    }

    #[test]
    fn only_text_like_bodies_long_enough_and_not_yet_encoded_are_worth_compressing() {
        let policy = CompressPolicy::for_tests();
        assert_eq!(
            policy.types.len(),
            DEFAULT_TYPES.len(),
            "every default type parses"
        );
        let ok = StatusCode::OK;
        assert!(policy.worth_it(ok, &headers(&[("content-type", "text/html; charset=utf-8")])));
        assert!(policy.worth_it(
            ok,
            &headers(&[("content-type", "Application/JSON"), ("content-length", "4096")])
        ));
        let not = [
            headers(&[("content-type", "text/html"), ("content-length", "100")]),
            headers(&[("content-type", "image/png")]),
            headers(&[("content-type", "text/event-stream")]),
            headers(&[("content-type", "application/grpc+proto")]),
            headers(&[("content-type", "text/html"), ("content-encoding", "gzip")]),
            headers(&[
                ("content-type", "text/html"),
                ("cache-control", "public, No-Transform"),
            ]),
            headers(&[]),
        ];
        for response in not {
            assert!(!policy.worth_it(ok, &response), "{response:?}");
        }
        let html = headers(&[("content-type", "text/html")]);
        for status in [
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::PARTIAL_CONTENT,
        ] {
            assert!(!policy.worth_it(status, &html), "{status}");
        }
        assert!(policy.worth_it(StatusCode::NOT_FOUND, &html));
    }
}
