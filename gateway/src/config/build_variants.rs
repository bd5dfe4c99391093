//! Validation of where a route sends its requests: one `upstream`, or weighted `variants`
//! (canary / A-B) with their `sticky` key and `force_header`.

use super::build_upstream::hash_on;
use super::error::Problems;
use super::raw::{RawRoute, RawVariant};
use crate::routing::{sticky_cookie, Variant, Variants, MAX_VARIANTS, MAX_WEIGHT};
use crate::stats::{Registry, RouteStats};
use crate::upstream::{HashOn, UpstreamRef};
use http::header::HeaderName;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

const DEFAULT_FORCE_HEADER: &str = "x-lookout-variant";

/// A route's upstream and statistics (its first variant's, when it has variants) and variants.
pub(super) struct Target {
    pub(super) upstream: UpstreamRef,
    pub(super) stats: Arc<RouteStats>,
    pub(super) variants: Option<Variants>,
}

type Upstreams = HashMap<String, UpstreamRef>;

pub(super) fn build_target(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    upstreams: &Upstreams,
    registry: &Registry,
) -> Option<Target> {
    match (&raw.upstream, raw.variants.is_empty()) {
        (Some(name), true) => {
            check_no_variant_options(p, field, raw);
            let upstream = upstreams.get(name.as_str()).cloned();
            if upstream.is_none() {
                let message = format!("unknown upstream `{}`", name.as_str());
                p.at(name.span(), format!("{field}.upstream"), message);
            }
            Some(Target {
                stats: registry.route(&raw.name, name),
                upstream: upstream?,
                variants: None,
            })
        }
        (Some(name), false) => {
            let message = "a route has either `upstream` or `variants`, not both";
            p.at(name.span(), format!("{field}.upstream"), message);
            None
        }
        (None, true) => {
            let message = "a route needs an `upstream` (or `variants`)";
            p.at(raw.name.span(), format!("{field}.upstream"), message);
            None
        }
        (None, false) => build_variants(p, field, raw, upstreams, registry),
    }
}

fn check_no_variant_options(p: &mut Problems, field: &str, raw: &RawRoute) {
    for (option, value) in [("sticky", &raw.sticky), ("force_header", &raw.force_header)] {
        if let Some(value) = value {
            p.at(
                value.span(),
                format!("{field}.{option}"),
                "applies only to a route with `variants`",
            );
        }
    }
}

fn build_variants(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    upstreams: &Upstreams,
    registry: &Registry,
) -> Option<Target> {
    let count = raw.variants.len();
    if !(2..=MAX_VARIANTS).contains(&count) {
        let message = format!("a route splits between 2 and {MAX_VARIANTS} variants, not {count}");
        p.at(raw.name.span(), format!("{field}.variants"), message);
        return None;
    }
    let mut names = HashSet::new();
    let mut used = HashSet::new();
    let mut list: Vec<Variant> = raw
        .variants
        .iter()
        .enumerate()
        .filter_map(|(i, v)| {
            let field = format!("{field}.variants[{i}]");
            build_variant(
                p,
                &field,
                v,
                (&mut names, &mut used),
                upstreams,
                &raw.name,
                registry,
            )
        })
        .collect();
    let configured: Box<[u32]> = raw.variants.iter().map(|v| *v.weight).collect();
    if configured.iter().all(|w| *w == 0) {
        let message = "the weights are all 0: at least one variant must take traffic";
        p.at(raw.name.span(), format!("{field}.variants"), message);
    }
    if list.len() < count {
        return None;
    }
    let weights = registry.variant_weights(
        &raw.name,
        list.iter().map(|v| v.name.clone()).collect(),
        configured,
    );
    let sticky = raw
        .sticky
        .as_ref()
        .and_then(|s| hash_on(p, &format!("{field}.sticky"), s));
    if let (Some(HashOn::Cookie(cookie_name)), Some(text)) = (&sticky, &raw.sticky) {
        for variant in &mut list {
            variant.sticky_cookie = sticky_cookie(cookie_name, &variant.name);
        }
        if list.iter().any(|v| v.sticky_cookie.is_none()) {
            let message = format!("`{cookie_name}` cannot be a cookie name");
            p.at(text.span(), format!("{field}.sticky"), message);
        }
    }
    let first = &list[0];
    Some(Target {
        upstream: first.upstream.clone(),
        stats: first.stats.clone(),
        variants: Some(Variants {
            sticky,
            force_header: force_header(p, field, raw),
            weights,
            list: list.into_boxed_slice(),
        }),
    })
}

fn build_variant(
    p: &mut Problems,
    field: &str,
    raw: &RawVariant,
    (names, used): (&mut HashSet<String>, &mut HashSet<String>),
    upstreams: &Upstreams,
    route: &str,
    registry: &Registry,
) -> Option<Variant> {
    let name = raw.name.trim();
    // Variant names travel in cookies, headers and metric labels.
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        let message = format!("`{name}` is not a variant name: use letters, digits, `-`, `_` and `.`");
        p.at(raw.name.span(), format!("{field}.name"), message);
    } else if !names.insert(name.to_owned()) {
        p.at(
            raw.name.span(),
            format!("{field}.name"),
            format!("duplicate variant `{name}`"),
        );
    }
    if *raw.weight > MAX_WEIGHT {
        let message = format!("weights are relative; at most {MAX_WEIGHT}");
        p.at(raw.weight.span(), format!("{field}.weight"), message);
    }
    let upstream = upstreams.get(raw.upstream.as_str()).cloned();
    match &upstream {
        None => {
            let message = format!("unknown upstream `{}`", raw.upstream.as_str());
            p.at(raw.upstream.span(), format!("{field}.upstream"), message);
        }
        // Each variant's figures are the route's under its upstream's name.
        Some(_) if !used.insert(raw.upstream.to_string()) => {
            let message = format!("another variant already goes to `{}`", raw.upstream.as_str());
            p.at(raw.upstream.span(), format!("{field}.upstream"), message);
        }
        Some(_) => {}
    }
    let upstream = upstream.filter(|_| valid)?;
    Some(Variant {
        name: name.into(),
        stats: registry.route(route, &raw.upstream),
        upstream,
        sticky_cookie: None,
    })
}

fn force_header(p: &mut Problems, field: &str, raw: &RawRoute) -> Option<HeaderName> {
    let Some(text) = &raw.force_header else {
        return Some(HeaderName::from_static(DEFAULT_FORCE_HEADER));
    };
    match text.trim() {
        "off" => None,
        name => HeaderName::try_from(name).map_or_else(
            |_| {
                let message = format!("`{name}` is not a valid header name");
                p.at(text.span(), format!("{field}.force_header"), message);
                None
            },
            Some,
        ),
    }
}
