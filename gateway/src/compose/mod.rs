//! API composition: a route kind that answers one client request with several upstream calls,
//! run in parallel as far as their inputs allow (a call that uses an earlier call's result
//! waits for that call only), each within its own timeout, and merges their JSON results into
//! one object keyed by call name. When a call fails, the route either fails whole or answers
//! with the results it has and an `errors` list.
//!
//! Everything here is compiled from config at load; the request-time phase is
//! `proxy::compose`.

mod merge;
mod template;

pub(crate) use merge::merged_body;
pub(crate) use template::{Inputs, PathTemplate};

use crate::upstream::one_shot::Failure;
use crate::upstream::UpstreamRef;
use http::header::HeaderName;
use metrics::Counter;
use std::sync::Arc;
use std::time::Duration;

/// Calls one composition route may make; a fan-out wider than this is a design smell, and
/// each call is a span, a step and a counter.
pub(crate) const MAX_CALLS: usize = 16;

#[derive(Debug)]
pub(crate) struct Composition {
    /// In config order, which is also the merged object's key order.
    pub(crate) calls: Box<[Call]>,
    pub(crate) on_error: OnError,
    /// Bound on each call's response body.
    pub(crate) max_size: u64,
    /// Client request headers passed on to every call (e.g. `authorization`).
    pub(crate) pass_headers: Box<[HeaderName]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnError {
    /// One failed call fails the response (502, or 504 when it timed out).
    Fail,
    /// The response carries the results there are, and an `errors` list for the rest.
    Partial,
}

#[derive(Debug)]
pub(crate) struct Call {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: UpstreamRef,
    pub(crate) path: PathTemplate,
    /// From sending the call to having read its whole response.
    pub(crate) timeout: Duration,
    /// Earlier calls whose results the path uses: the call starts once they have answered.
    pub(crate) needs: Box<[usize]>,
    /// Whether a later call uses a field of this one's result (which is then parsed).
    pub(crate) feeds_later: bool,
    pub(crate) counters: CallCounters,
}

/// Why a call has no result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No instance, no connection, or no response headers in time.
    Upstream(Failure),
    /// The whole response did not arrive in time.
    BodyTimedOut,
    /// The upstream answered with a status other than 2xx.
    Status(u16),
    /// The response body is over the composition's `max_size`.
    TooLarge,
    /// The response body is not JSON.
    NotJson,
    /// A field the path uses is missing from an earlier call's result (or is not a scalar).
    MissingField(Box<str>),
    /// A call this one needs failed, so this one was not made.
    Skipped(Arc<str>),
    /// The path made from the client's request is not a valid URI.
    InvalidPath,
}

impl CallError {
    /// As path steps, metrics and the `errors` list name it.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            CallError::Upstream(failure) => failure.as_str(),
            CallError::BodyTimedOut => "timeout",
            CallError::Status(_) => "bad_status",
            CallError::TooLarge => "too_large",
            CallError::NotJson => "not_json",
            CallError::MissingField(_) => "missing_field",
            CallError::Skipped(_) => "skipped",
            CallError::InvalidPath => "invalid_path",
        }
    }

    pub(crate) fn timed_out(&self) -> bool {
        matches!(
            self,
            CallError::Upstream(Failure::TimedOut) | CallError::BodyTimedOut
        )
    }

    /// For people: what went wrong with `call`.
    pub(crate) fn describe(&self, call: &Call) -> String {
        let upstream = call.upstream.name();
        match self {
            CallError::Upstream(Failure::NoInstance) => {
                format!("upstream `{upstream}` has no healthy instance")
            }
            CallError::Upstream(Failure::Overloaded) => {
                format!(
                    "upstream `{upstream}` has as many requests waiting for it as it takes (max_in_flight)"
                )
            }
            CallError::Upstream(Failure::Unreachable) => {
                format!("upstream `{upstream}` could not be reached")
            }
            CallError::Upstream(Failure::InvalidResponse) => {
                format!("upstream `{upstream}` answered with a response that is not valid HTTP")
            }
            CallError::Upstream(Failure::TimedOut) | CallError::BodyTimedOut => {
                format!("upstream `{upstream}` did not answer within {:?}", call.timeout)
            }
            CallError::Status(status) => format!("upstream `{upstream}` answered {status}"),
            CallError::TooLarge => {
                format!("upstream `{upstream}`'s response is over the composition's max_size")
            }
            CallError::NotJson => format!("upstream `{upstream}`'s response is not JSON"),
            CallError::MissingField(field) => format!("`{field}` is not in the result it refers to"),
            CallError::Skipped(needed) => format!("not made: call `{needed}` failed"),
            CallError::InvalidPath => "the path made from this request is not a valid URI".to_owned(),
        }
    }
}

/// `lookout_compose_calls_total{http_route, call, result}`, one counter per result.
#[derive(Debug)]
pub(crate) struct CallCounters {
    pub(crate) by_result: Box<[(&'static str, Counter)]>,
}

impl CallCounters {
    /// Every result a call can have, so each counter exists (at zero) from the start.
    pub(crate) const RESULTS: [&'static str; 13] = [
        "ok",
        "no_healthy_instance",
        "upstream_overloaded",
        "connection_error",
        "invalid_response",
        "timeout",
        "bad_status",
        "too_large",
        "not_json",
        "missing_field",
        "skipped",
        "invalid_path",
        "cancelled",
    ];

    pub(crate) fn count(&self, result: &str) {
        if let Some((_, counter)) = self.by_result.iter().find(|(r, _)| *r == result) {
            counter.increment(1);
        }
    }
}
