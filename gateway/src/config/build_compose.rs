//! Validation of a route's `compose:` (API composition): its calls' names, upstreams, paths and
//! timeouts, the route options a composition cannot have, and its methods.

use super::build_route::Shared;
use super::error::Problems;
use super::raw::{RawCall, RawCompose, RawRoute};
use super::values::{bytes, duration};
use crate::compose::{Call, CallCounters, Composition, OnError, PathTemplate, MAX_CALLS};
use crate::stats::COMPOSE_CALLS;
use http::header::HeaderName;
use http::Method;
use metrics::Label;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_MAX_SIZE: u64 = 1024 * 1024;
/// Call names are keys of the merged object; these mean something else there or in paths.
const RESERVED_NAMES: [&str; 3] = ["errors", "path", "query"];

pub(super) fn build_composition(
    p: &mut Problems,
    field: &str,
    route: &RawRoute,
    raw: &RawCompose,
    captures: &[String],
    shared: &Shared<'_>,
) -> Option<Arc<Composition>> {
    check_route_options(p, field, route);
    let field = format!("{field}.compose");
    if raw.calls.is_empty() || raw.calls.len() > MAX_CALLS {
        let message = format!("a composition makes 1 to {MAX_CALLS} calls");
        p.at(route.name.span(), format!("{field}.calls"), message);
        return None;
    }
    let mut calls: Vec<Call> = Vec::with_capacity(raw.calls.len());
    let mut names: Vec<&str> = Vec::with_capacity(raw.calls.len());
    let mut valid = true;
    for (i, call) in raw.calls.iter().enumerate() {
        let field = format!("{field}.calls[{i}]");
        match build_call(p, &field, &route.name, call, &names, captures, shared) {
            Some(call) => calls.push(call),
            None => valid = false,
        }
        names.push(call.name.as_str());
    }
    let on_error = on_error(p, &field, raw);
    let max_size = raw
        .max_size
        .as_ref()
        .and_then(|size| bytes(p, &format!("{field}.max_size"), size))
        .unwrap_or(DEFAULT_MAX_SIZE);
    let pass_headers = pass_headers(p, &field, raw);
    if !valid {
        return None;
    }
    let fed: Vec<usize> = calls.iter().flat_map(|call| call.needs.iter().copied()).collect();
    for index in fed {
        calls[index].feeds_later = true;
    }
    Some(Arc::new(Composition {
        calls: calls.into(),
        on_error: on_error?,
        max_size,
        pass_headers,
    }))
}

fn build_call(
    p: &mut Problems,
    field: &str,
    route: &str,
    raw: &RawCall,
    earlier: &[&str],
    captures: &[String],
    shared: &Shared<'_>,
) -> Option<Call> {
    let name = raw.name.as_str();
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !plain || RESERVED_NAMES.contains(&name) {
        let message = format!(
            "`{name}` is not a call name: use letters, digits, `_` and `-`, and none of {}",
            RESERVED_NAMES.join(", ")
        );
        p.at(raw.name.span(), format!("{field}.name"), message);
    } else if earlier.contains(&name) {
        p.at(
            raw.name.span(),
            format!("{field}.name"),
            format!("duplicate call name `{name}`"),
        );
    }
    let upstream = shared.upstreams.get(raw.upstream.as_str()).cloned();
    if upstream.is_none() {
        let message = format!("unknown upstream `{}`", &*raw.upstream);
        p.at(raw.upstream.span(), format!("{field}.upstream"), message);
    }
    let path = PathTemplate::parse(&raw.path, earlier, captures)
        .map_err(|message| p.at(raw.path.span(), format!("{field}.path"), message))
        .ok();
    let upstream = upstream?;
    let timeout = duration(
        p,
        &format!("{field}.timeout"),
        raw.timeout.as_ref(),
        upstream.current().request_timeout,
    );
    let path = path?;
    Some(Call {
        name: name.into(),
        needs: path.needs().into(),
        path,
        upstream,
        timeout,
        feeds_later: false,
        counters: counters(shared, route, name),
    })
}

fn counters(shared: &Shared<'_>, route: &str, call: &str) -> CallCounters {
    let metrics = shared.registry.metrics();
    let counter = |result: &'static str| {
        let labels = vec![
            Label::new("http_route", route.to_owned()),
            Label::new("call", call.to_owned()),
            Label::new("result", result),
        ];
        (result, metrics.counter(COMPOSE_CALLS, labels))
    };
    CallCounters {
        by_result: CallCounters::RESULTS.into_iter().map(counter).collect(),
    }
}

fn on_error(p: &mut Problems, field: &str, raw: &RawCompose) -> Option<OnError> {
    match raw.on_error.as_ref().map(|t| (t, t.trim())) {
        None | Some((_, "fail")) => Some(OnError::Fail),
        Some((_, "partial")) => Some(OnError::Partial),
        Some((text, other)) => {
            let message = format!("`{other}` is not `fail` or `partial`");
            p.at(text.span(), format!("{field}.on_error"), message);
            None
        }
    }
}

fn pass_headers(p: &mut Problems, field: &str, raw: &RawCompose) -> Box<[HeaderName]> {
    raw.pass_headers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            HeaderName::try_from(name.trim())
                .map_err(|_| {
                    let message = format!("`{}` is not a valid header name", &**name);
                    p.at(name.span(), format!("{field}.pass_headers[{i}]"), message);
                })
                .ok()
        })
        .collect()
}

/// A composition answers the request itself: the options about forwarding it do not apply.
fn check_route_options(p: &mut Problems, field: &str, raw: &RawRoute) {
    let texts = [
        ("upstream", &raw.upstream),
        ("sticky", &raw.sticky),
        ("force_header", &raw.force_header),
        ("strip_prefix", &raw.strip_prefix),
        ("rewrite", &raw.rewrite),
        ("per_try_timeout", &raw.per_try_timeout),
    ];
    for (option, value) in texts {
        if let Some(value) = value {
            p.at(value.span(), format!("{field}.{option}"), not_for_compose(option));
        }
    }
    let transform = raw.transform.as_ref();
    let others = [
        ("variants", !raw.variants.is_empty()),
        ("mirror", raw.mirror.is_some()),
        (
            "transform.request_headers",
            transform.is_some_and(|t| t.request_headers.is_some()),
        ),
        ("transform.path", transform.is_some_and(|t| t.path.is_some())),
        (
            "transform.request_body",
            transform.is_some_and(|t| t.request_body.is_some()),
        ),
        (
            "transform.response_body",
            transform.is_some_and(|t| t.response_body.is_some()),
        ),
    ];
    for (option, _) in others.into_iter().filter(|(_, set)| *set) {
        p.at(
            raw.name.span(),
            format!("{field}.{option}"),
            not_for_compose(option),
        );
    }
}

fn not_for_compose(option: &str) -> String {
    format!("`{option}` does not apply to a `compose` route (its calls say where requests go)")
}

/// A composition answers reads: GET and HEAD (the default), nothing else.
pub(super) fn compose_methods(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    methods: Vec<Method>,
) -> Vec<Method> {
    if methods.is_empty() {
        return vec![Method::GET, Method::HEAD];
    }
    for (i, text) in raw.matches.methods.iter().enumerate() {
        let method = text.trim().to_ascii_uppercase();
        if method != "GET" && method != "HEAD" {
            let message = format!("a `compose` route answers GET and HEAD, not {method}");
            p.at(text.span(), format!("{field}.match.methods[{i}]"), message);
        }
    }
    methods
}

/// The route's default timeout: long enough for every call to take its own in turn.
pub(super) fn total_timeout(composition: &Composition) -> Duration {
    composition.calls.iter().map(|call| call.timeout).sum()
}
