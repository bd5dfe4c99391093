//! Validation of a route's `compress:` block.

use super::error::Problems;
use super::raw::{RawCompress, RawLevels, Text};
use super::values::{bytes, positive};
use crate::compress::{Coding, CompressCounters, CompressPolicy, Levels, MediaRange, DEFAULT_TYPES};
use crate::stats::{Registry, COMPRESSION_AT_LIMIT, COMPRESSION_BYTES, RESPONSES_COMPRESSED};
use marked_yaml::Spanned;
use metrics::Label;
use std::ops::RangeInclusive;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

/// nginx's `gzip_min_length` is 20 bytes; below a kilobyte the coding's own framing and the
/// CPU spent win little.
const DEFAULT_MIN_SIZE: u64 = 1024;

/// Under 190 MiB of encoders at the most, in brotli (140 to 750 KiB per response, measured by
/// `tests/bench/compression-memory.sh`).
const DEFAULT_MAX_IN_FLIGHT: u32 = 256;

/// `compress:` validated: the top-level block over the built-in defaults, or a route's own
/// over those.
#[derive(Debug, Clone)]
pub(super) struct CompressSettings {
    /// `enabled: false` turns compression off for a route (or, at the top, for the routes
    /// that do not turn it on themselves).
    enabled: bool,
    min_size: u64,
    types: Box<[MediaRange]>,
    max_in_flight: usize,
    levels: Levels,
    /// The responses being compressed under `max_in_flight`: one count for every route that
    /// takes it from the top level, so that it bounds the encoders' memory gateway-wide.
    in_flight: Arc<AtomicUsize>,
}

impl Default for CompressSettings {
    fn default() -> Self {
        CompressSettings {
            enabled: true,
            min_size: DEFAULT_MIN_SIZE,
            types: DEFAULT_TYPES
                .iter()
                .filter_map(|t| MediaRange::parse(t))
                .collect(),
            max_in_flight: DEFAULT_MAX_IN_FLIGHT as usize,
            levels: Levels::default(),
            in_flight: Arc::default(),
        }
    }
}

/// `raw`'s fields over `base`'s. `route`: the route's name, where a problem with no place of its
/// own is reported (none at the top level).
pub(super) fn build_settings(
    p: &mut Problems,
    field: &str,
    route: Option<&Text>,
    raw: &RawCompress,
    base: &CompressSettings,
) -> CompressSettings {
    let min_size = raw
        .min_size
        .as_ref()
        .and_then(|text| bytes(p, &format!("{field}.min_size"), text))
        .unwrap_or(base.min_size);
    let types = match &raw.types {
        None => base.types.clone(),
        Some(listed) => {
            if listed.is_empty() {
                let message = "lists no media type: name one, or set `enabled: false`";
                match route {
                    Some(route) => p.at(route.span(), format!("{field}.types"), message),
                    None => p.nowhere(format!("{field}.types"), message),
                }
            }
            media_ranges(p, field, listed)
        }
    };
    let (max_in_flight, in_flight) = match &raw.max_in_flight {
        None => (base.max_in_flight, base.in_flight.clone()),
        Some(max) => {
            let own = positive(p, &format!("{field}.max_in_flight"), Some(max), 1);
            (own as usize, Arc::default())
        }
    };
    CompressSettings {
        enabled: raw.enabled.as_ref().map_or(base.enabled, |enabled| **enabled),
        min_size,
        types,
        max_in_flight,
        levels: raw
            .levels
            .as_ref()
            .map_or(base.levels, |raw| build_levels(p, field, raw, base.levels)),
        in_flight,
    }
}

/// `levels:`, each over `base`'s, within its coding's range.
fn build_levels(p: &mut Problems, field: &str, raw: &RawLevels, base: Levels) -> Levels {
    let mut level = |name: &str, value: &Option<Spanned<u32>>, range: RangeInclusive<u32>, base: u32| {
        let Some(value) = value else { return base };
        if range.contains(value) {
            return **value;
        }
        let message = format!(
            "`{}` is not a {name} level ({} to {})",
            **value,
            range.start(),
            range.end()
        );
        p.at(value.span(), format!("{field}.levels.{name}"), message);
        base
    };
    Levels {
        gzip: level("gzip", &raw.gzip, 1..=9, base.gzip),
        br: level("br", &raw.br, 0..=11, base.br),
        zstd: level("zstd", &raw.zstd, 1..=19, base.zstd),
    }
}

fn media_ranges(p: &mut Problems, field: &str, listed: &[Text]) -> Box<[MediaRange]> {
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

/// A route's compression: its own `compress:` over the top-level one (`defaults`), field by
/// field; `None` when neither is set, or when the one that applies says `enabled: false`.
pub(super) fn build_compress(
    p: &mut Problems,
    field: &str,
    route: &Text,
    raw: Option<&RawCompress>,
    defaults: Option<&CompressSettings>,
    registry: &Registry,
) -> Option<Arc<CompressPolicy>> {
    let settings = match (raw, defaults) {
        (None, None) => return None,
        (None, Some(defaults)) => defaults.clone(),
        (Some(raw), defaults) => {
            // Without a top level, the built-in defaults: each route counts its own.
            let base = defaults.cloned().unwrap_or_default();
            build_settings(p, field, Some(route), raw, &base)
        }
    };
    settings.enabled.then(|| {
        Arc::new(CompressPolicy {
            min_size: settings.min_size,
            types: settings.types,
            max_in_flight: settings.max_in_flight,
            in_flight: settings.in_flight,
            levels: settings.levels,
            counters: counters(route, registry),
        })
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
