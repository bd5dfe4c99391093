//! A table of requests, each linking to its page: a route's slowest and failed requests, and the
//! list of requests that meet a search.

use super::{request_address, segment};
use crate::format::{clock, day_clock, duration, grpc_code};
use askama::Template;
use lookout_analytics::analysis::views::RequestRow;
use lookout_analytics::UNMATCHED_ROUTE;

struct Listed {
    time: String,
    request_id: String,
    /// The id as the table shows it: its end, for a long one (the page shows it whole).
    shown_id: String,
    /// Its page's address.
    link: String,
    /// The route's name and its page's address segment, when the table has the column.
    route: Option<(String, String)>,
    method: String,
    path: String,
    status: u16,
    failed: bool,
    duration: String,
    instance: String,
    attempts: u32,
    error: String,
}

#[derive(Template)]
#[template(path = "request_table.html")]
pub(crate) struct RequestTable {
    id: &'static str,
    with_routes: bool,
    rows: Vec<Listed>,
}

impl RequestTable {
    /// Requests of one route, of the last hour: no route column, the time of day.
    pub(crate) fn of_route(id: &'static str, rows: &[RequestRow]) -> RequestTable {
        RequestTable {
            id,
            with_routes: false,
            rows: rows.iter().map(|r| listed(r, clock, false)).collect(),
        }
    }

    /// Requests of any route and any day.
    pub(crate) fn of_any_route(id: &'static str, rows: &[RequestRow]) -> RequestTable {
        RequestTable {
            id,
            with_routes: true,
            rows: rows.iter().map(|r| listed(r, day_clock, true)).collect(),
        }
    }
}

fn listed(r: &RequestRow, time: fn(i64) -> String, with_route: bool) -> Listed {
    let route = with_route.then(|| {
        let name = r.route.as_deref().unwrap_or(UNMATCHED_ROUTE);
        (name.to_owned(), segment(name))
    });
    Listed {
        time: time(r.ts_us),
        request_id: r.request_id.clone(),
        shown_id: shortened(&r.request_id),
        link: request_address(&r.request_id),
        route,
        method: r.method.clone(),
        path: r.path.clone(),
        status: r.status,
        failed: r.failed(),
        duration: duration(r.duration_us as f64),
        instance: r.instance.clone().unwrap_or_default(),
        attempts: r.attempts,
        error: listed_error(r),
    }
}

/// Ids longer than this show only their end.
const SHOWN_ID_CHARS: usize = 13;

/// The end of a long id, which tells it from its neighbours: a UUID version 7, as the gateway
/// makes, begins with its moment, which requests listed together share.
fn shortened(id: &str) -> String {
    let chars = id.chars().count();
    if chars <= SHOWN_ID_CHARS {
        return id.to_owned();
    }
    let end: String = id.chars().skip(chars - (SHOWN_ID_CHARS - 1)).collect();
    format!("…{end}")
}

/// What went wrong, in a list of requests: the gateway's error, else a failed gRPC call's status.
fn listed_error(r: &RequestRow) -> String {
    match (&r.error_kind, r.grpc_status) {
        (Some(kind), _) => kind.clone(),
        (None, Some(code)) if code != 0 => format!("gRPC {}", grpc_code(code)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_id_shows_its_end() {
        assert_eq!(shortened("01a24db4-c286-7ef6-a50f-1e48764cba99"), "…1e48764cba99");
        assert_eq!(shortened("load-17"), "load-17");
        assert_eq!(shortened("abcdefghijklm"), "abcdefghijklm");
        assert_eq!(shortened("żółw-żółw-żółw"), "…łw-żółw-żółw");
    }
}
