//! One request, by request id or trace id: its figures and the waterfall of its path.

use super::search_form::Form;
use super::{fragment, read, render, request_address, segment, PageError, Shared};
use crate::chart::{Span, Waterfall};
use crate::format::{bytes, duration, grpc_code, timestamp};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use lookout_analytics::analysis::views::{self, RequestDetails, RequestRow, Step};
use lookout_analytics::UNMATCHED_ROUTE;

#[derive(Template)]
#[template(path = "request.html")]
struct RequestPage {
    nav: &'static str,
    request_id: String,
    status: u16,
    failed: bool,
    duration: String,
    attempts: u32,
    bytes_in: String,
    bytes_out: String,
    waterfall: String,
    fields: Vec<Field>,
    jaeger: Option<String>,
}

pub(super) async fn page(
    State(dashboard): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let wanted = id.clone();
    let found = read(&dashboard, move |conn| {
        let Some((request, details)) = views::request(conn, &wanted)? else {
            return Ok(None);
        };
        let steps = views::steps(conn, request.request_key)?;
        Ok(Some((request, details, steps)))
    })
    .await?;
    let Some((request, details, steps)) = found else {
        return Err(PageError::NotFound(format!(
            "No request with id or trace id {id:?} in the store."
        )));
    };
    if request.request_id != id {
        // Found by trace id: the request's own address is the one to share.
        return Ok(Redirect::to(&request_address(&request.request_id)).into_response());
    }
    // A trace the gateway did not keep was never exported: no link to a page that would say so.
    let exported = details.trace_sampled != Some(false);
    let jaeger = match (&dashboard.jaeger_ui, &request.trace_id) {
        (Some(ui), Some(trace)) if exported => Some(format!("{}/trace/{trace}", ui.trim_end_matches('/'))),
        _ => None,
    };
    let page = RequestPage {
        nav: "requests",
        status: request.status,
        failed: request.failed(),
        duration: duration(request.duration_us as f64),
        attempts: request.attempts,
        bytes_in: bytes(request.bytes_in),
        bytes_out: bytes(request.bytes_out),
        waterfall: fragment(&waterfall(&request, &steps)),
        fields: fields(&request, &details),
        jaeger,
        request_id: request.request_id,
    };
    Ok(render(&page))
}

fn waterfall(request: &RequestRow, steps: &[Step]) -> Waterfall {
    let whole = Span {
        label: format!("{} {}", request.method, request.path),
        detail: format!("{} in {}", request.status, duration(request.duration_us as f64)),
        start_us: 0,
        duration_us: request.duration_us,
        lead_us: 0,
        failed: request.failed(),
    };
    let mut attempt = 0;
    let spans = std::iter::once(whole).chain(steps.iter().map(|step| {
        let label = match step.kind.as_str() {
            "upstream_attempt" => {
                attempt += 1;
                format!("upstream attempt {attempt}")
            }
            "route_match" => "route match".to_owned(),
            "compose_call" => format!("call {}", step.name.as_deref().unwrap_or("?")),
            other => other.replace('_', " "),
        };
        let outcome = match (&step.error, step.status) {
            (Some(error), _) => error.clone(),
            (None, Some(status)) => status.to_string(),
            (None, None) => String::new(),
        };
        let at = step
            .instance
            .as_deref()
            .map(|i| format!(" · {i}"))
            .unwrap_or_default();
        // Only a new connection is worth a word: most attempts reuse one.
        let connecting = match step.connect_us {
            Some(us) if us > 0 => format!(" · {} connecting", duration(us as f64)),
            _ => String::new(),
        };
        Span {
            label,
            detail: format!("{}{at} {outcome}{connecting}", duration(step.duration_us as f64)),
            start_us: step.start_us,
            duration_us: step.duration_us,
            lead_us: step.connect_us.unwrap_or(0),
            failed: step.error.is_some() || step.status.is_some_and(|s| s >= 500),
        }
    }));
    Waterfall::new(request.duration_us, spans.collect())
}

/// One line of a request's details, and where it leads: the route's page, or the list of the
/// requests that share the value.
struct Field {
    name: &'static str,
    value: String,
    link: Option<String>,
}

/// The request's details, in the order an investigation reads them: what came in, what the
/// gateway made of it, where it went, who sent it.
fn fields(r: &RequestRow, d: &RequestDetails) -> Vec<Field> {
    let or_none = |v: Option<&str>| v.unwrap_or("–").to_owned();
    let plain = |name, value| Field {
        name,
        value,
        link: None,
    };
    // A field the list of requests can search by: its link lists the requests that share it.
    let searchable = |name: &'static str, value: &str, search: Form| Field {
        name,
        value: value.to_owned(),
        link: Some(search.address(None)),
    };
    let route = r.route.as_deref().unwrap_or(UNMATCHED_ROUTE);
    let mut fields = vec![
        plain("time", timestamp(r.ts_us)),
        Field {
            link: Some(format!("/dashboard/routes/{}", segment(route))),
            ..plain("route", route.to_owned())
        },
        plain("method", r.method.clone()),
        plain("host", or_none(d.host.as_deref())),
        plain("path", r.path.clone()),
        plain("protocol", protocol(d)),
        plain("client certificate", or_none(d.client_cert.as_deref())),
        plain("status", r.status.to_string()),
        plain("error", or_none(r.error_kind.as_deref())),
        plain("refused by", refusal(d)),
        plain("threat", or_none(d.threat.as_deref())),
        plain("gRPC status", r.grpc_status.map_or_else(|| "–".into(), grpc_code)),
        plain("cache", or_none(d.cache_status.as_deref())),
        plain("upstream", upstream(r, d)),
        plain("instance", or_none(r.instance.as_deref())),
        plain("upstream connect", connect_time(r, d)),
        plain("upstream first byte", first_byte_time(r, d)),
        plain("trace id", trace(r, d)),
        searchable(
            "client",
            &r.client_ip,
            Form {
                client: r.client_ip.clone(),
                ..Form::default()
            },
        ),
        match &r.consumer {
            Some(consumer) => searchable(
                "consumer",
                consumer,
                Form {
                    consumer: consumer.clone(),
                    ..Form::default()
                },
            ),
            None => plain("consumer", "–".into()),
        },
        plain("variant", or_none(r.variant.as_deref())),
    ];
    if d.mirrored {
        fields.push(plain("mirrored", "a copy sent to the route's mirror".into()));
    }
    fields
}

/// The trace id, and whether its spans were exported.
fn trace(r: &RequestRow, d: &RequestDetails) -> String {
    match (&r.trace_id, d.trace_sampled) {
        (None, _) => "–".into(),
        (Some(id), Some(false)) => format!("{id} (not sampled: its spans were not exported)"),
        (Some(id), _) => id.clone(),
    }
}

/// `HTTP/1.1`, or `HTTP/2 over TLSv1.3` on the TLS listener.
fn protocol(d: &RequestDetails) -> String {
    match &d.tls_version {
        Some(tls) => format!("{} over {tls}", d.http_version),
        None => d.http_version.clone(),
    }
}

/// The policy that refused the request and why: `rate_limit: too many requests ...`.
fn refusal(d: &RequestDetails) -> String {
    match (&d.blocked_by, &d.block_reason) {
        (Some(by), Some(reason)) => format!("{by}: {reason}"),
        (Some(by), None) => by.clone(),
        _ => "–".into(),
    }
}

/// The last upstream attempt's details, when the request was proxied to an upstream (not
/// refused, served from the cache or composed of calls).
/// The route's upstream, and whether it was asked at all (a refused request, or a cache hit,
/// was not).
fn upstream(r: &RequestRow, d: &RequestDetails) -> String {
    match (&d.upstream, r.attempts) {
        (None, _) => "–".into(),
        (Some(name), 0) => format!("{name} (not asked)"),
        (Some(name), _) => name.clone(),
    }
}

fn proxied(r: &RequestRow, d: &RequestDetails) -> bool {
    r.attempts > 0 && d.upstream.is_some()
}

fn connect_time(r: &RequestRow, d: &RequestDetails) -> String {
    match (proxied(r, d), d.upstream_connect_us) {
        (false, _) => "–".into(),
        (true, 0) => "none: a connection already open".into(),
        (true, us) => duration(us as f64),
    }
}

fn first_byte_time(r: &RequestRow, d: &RequestDetails) -> String {
    match proxied(r, d) {
        true => duration(d.upstream_ttfb_us as f64),
        false => "–".into(),
    }
}
