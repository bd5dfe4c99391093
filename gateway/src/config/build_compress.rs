//! Validation of a route's `compress:` block.

use super::error::Problems;
use super::raw::{RawCompress, Text};
use super::values::{bytes, positive};
use crate::compress::{Coding, CompressCounters, CompressPolicy, MediaRange, DEFAULT_TYPES};
use crate::stats::{Registry, COMPRESSION_AT_LIMIT, COMPRESSION_BYTES, RESPONSES_COMPRESSED};
use metrics::Label;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// nginx's `gzip_min_length` is 20 bytes; below a kilobyte the coding's own framing and the
/// CPU spent win little.
const DEFAULT_MIN_SIZE: u64 = 1024;

/// Under 190 MiB of encoders at the most, in brotli (140 to 750 KiB per response, measured by
/// `tests/bench/compression-memory.sh`).
const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// `route`: the route's name, where a problem with no place of its own is reported.
pub(super) fn build_compress(
    p: &mut Problems,
    field: &str,
    route: &Text,
    raw: &RawCompress,
    registry: &Registry,
) -> Arc<CompressPolicy> {
    let min_size = raw
        .min_size
        .as_ref()
        .and_then(|text| bytes(p, &format!("{field}.min_size"), text))
        .unwrap_or(DEFAULT_MIN_SIZE);
    let types = match &raw.types {
        None => DEFAULT_TYPES
            .iter()
            .filter_map(|t| MediaRange::parse(t))
            .collect(),
        Some(listed) => {
            if listed.is_empty() {
                let message = "lists no media type: name one, or remove `compress`";
                p.at(route.span(), format!("{field}.types"), message);
            }
            let parsed = listed.iter().enumerate().filter_map(|(i, text)| {
                let range = MediaRange::parse(text);
                if range.is_none() {
                    let message = format!(
                        "`{}` is not a media type (e.g. `text/html`, `text/*`, `application/*+json`)",
                        &**text
                    );
                    p.at(text.span(), format!("{field}.types[{i}]"), message);
                }
                range
            });
            parsed.collect()
        }
    };
    let max_in_flight = positive(
        p,
        &format!("{field}.max_in_flight"),
        raw.max_in_flight.as_ref(),
        DEFAULT_MAX_IN_FLIGHT,
    );
    Arc::new(CompressPolicy {
        min_size,
        types,
        max_in_flight: max_in_flight as usize,
        in_flight: AtomicUsize::new(0),
        counters: counters(route, registry),
    })
}

fn counters(route: &str, registry: &Registry) -> CompressCounters {
    let metrics = registry.metrics();
    let labels = |name: &'static str, value: &'static str| {
        vec![
            Label::new("http_route", route.to_owned()),
            Label::new(name, value),
        ]
    };
    CompressCounters {
        responses: Coding::ALL
            .map(|coding| metrics.counter(RESPONSES_COMPRESSED, labels("encoding", coding.name()))),
        bytes_in: metrics.counter(COMPRESSION_BYTES, labels("stage", "in")),
        bytes_out: metrics.counter(COMPRESSION_BYTES, labels("stage", "out")),
        at_limit: metrics.counter(
            COMPRESSION_AT_LIMIT,
            vec![Label::new("http_route", route.to_owned())],
        ),
    }
}
