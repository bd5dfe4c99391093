//! Requests that meet a search (route, outcome, duration, path, client, consumer), latest first,
//! a page at a time: the dashboard's list of requests.
//!
//! A page is read from the last hour before its start first. Each block of the store keeps the
//! range of its timestamps, so that read skips every older block, however large the store; only
//! a search the last hour cannot fill reads further back.

use super::views::{request_row, RequestRow, FAILED, REQUEST_COLUMNS};
use super::{at, now_us, HOUR_US};
use duckdb::types::Value;
use duckdb::Connection;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What a list of requests keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// A route's name, or [`crate::UNMATCHED_ROUTE`]; `None` for every route.
    pub route: Option<String>,
    pub outcome: Outcome,
    /// Only requests that took longer than this.
    pub slower_than_us: Option<u64>,
    /// Only requests whose path starts with this.
    pub path_prefix: Option<String>,
    /// Only requests from this client address.
    pub client_ip: Option<IpAddr>,
    /// Only requests of this consumer (an API key's or a token's).
    pub consumer: Option<String>,
    /// Only requests listed after this one: older, or as old and stored before it.
    pub after: Option<Cursor>,
    /// Only requests that started at or after this, microseconds since the Unix epoch.
    pub since_us: Option<i64>,
}

/// Which outcomes a search keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Outcome {
    #[default]
    Any,
    /// As [`RequestRow::failed`]: a 5xx, a gRPC call that failed on the server's side, or an
    /// error at the gateway (`rate_limited`, `no_route`, ...).
    Failed,
    /// The server errors error ratios count: a 5xx, or a gRPC call that failed on the server's
    /// side; not the gateway's refusals (429, 401, ...).
    ServerError,
    /// Turned away by a policy at the edge (auth, rate limit, attack filter, ...).
    Refused,
    /// Missed its route's objective (`slo:`): a server error, or slower than its latency.
    MissedObjective,
    /// One status class: `1` to `5` for 1xx to 5xx.
    Class(u8),
}

/// A place in a list of requests: a request's time and its key in the store, which tells apart
/// requests of the same microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub ts_us: i64,
    pub request_key: u64,
}

impl Cursor {
    /// The place right after every request of the microsecond `ts_us`: a list from it begins
    /// with them, then the older ones.
    pub fn from_moment(ts_us: i64) -> Cursor {
        Cursor {
            ts_us,
            request_key: u64::MAX,
        }
    }

    pub fn of(request: &RequestRow) -> Cursor {
        Cursor {
            ts_us: request.ts_us,
            request_key: request.request_key,
        }
    }
}

/// Written `TS.KEY`, as in a page's link to the next.
impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ts_us, self.request_key)
    }
}

/// Why a cursor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a place in the list, TIME.KEY (two whole numbers), as the link to older requests has")]
pub struct BadCursor;

impl FromStr for Cursor {
    type Err = BadCursor;

    fn from_str(text: &str) -> Result<Cursor, BadCursor> {
        let (ts, key) = text.split_once('.').ok_or(BadCursor)?;
        Ok(Cursor {
            ts_us: ts.parse().map_err(|_| BadCursor)?,
            request_key: key.parse().map_err(|_| BadCursor)?,
        })
    }
}

/// A page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub requests: Vec<RequestRow>,
    /// Where the next page starts, when older requests meet the search.
    pub next: Option<Cursor>,
}

/// Up to `limit` requests that meet `search`, latest first.
pub fn search(conn: &Connection, search: &Search, limit: usize) -> duckdb::Result<Page> {
    let start_us = search.after.map_or_else(now_us, |c| c.ts_us);
    let hour_ago = start_us - HOUR_US;
    let recent_since = search.since_us.map_or(hour_ago, |since| since.max(hour_ago));
    // One more than the page, to know whether there is a next one.
    let wanted = limit + 1;
    let mut requests = read(conn, search, Some(recent_since), None, wanted)?;
    if requests.len() < wanted && search.since_us.is_none_or(|since| since < hour_ago) {
        let older = read(
            conn,
            search,
            search.since_us,
            Some(hour_ago),
            wanted - requests.len(),
        )?;
        requests.extend(older);
    }
    let next = match requests.len() > limit {
        true => {
            requests.truncate(limit);
            requests.last().map(Cursor::of)
        }
        false => None,
    };
    Ok(Page { requests, next })
}

/// The requests that meet `search` in `[since_us, before_us)`, latest first.
fn read(
    conn: &Connection,
    search: &Search,
    since_us: Option<i64>,
    before_us: Option<i64>,
    limit: usize,
) -> duckdb::Result<Vec<RequestRow>> {
    let mut conditions = vec!["NOT mirrored"];
    let mut params = Vec::new();
    if let Some(since_us) = since_us {
        conditions.push("ts >= ?");
        params.push(at(since_us));
    }
    if let Some(before_us) = before_us {
        conditions.push("ts < ?");
        params.push(at(before_us));
    }
    if let Some(after) = search.after {
        conditions.push("(ts < ? OR (ts = ? AND request_key < ?))");
        params.extend([
            at(after.ts_us),
            at(after.ts_us),
            Value::UBigInt(after.request_key),
        ]);
    }
    if let Some(route) = &search.route {
        conditions.push(route_is!());
        params.push(Value::Text(route.clone()));
    }
    match search.outcome {
        Outcome::Any => {}
        Outcome::Failed => conditions.push(FAILED),
        Outcome::ServerError => conditions.push(server_error!()),
        Outcome::Refused => conditions.push("blocked_by IS NOT NULL"),
        Outcome::MissedObjective => conditions.push("NOT slo_met"),
        Outcome::Class(class) => {
            conditions.push("status // 100 = ?");
            params.push(Value::USmallInt(u16::from(class)));
        }
    }
    if let Some(slower_than_us) = search.slower_than_us {
        conditions.push("duration_us > ?");
        params.push(Value::UBigInt(slower_than_us));
    }
    if let Some(prefix) = &search.path_prefix {
        conditions.push("starts_with(path, ?)");
        params.push(Value::Text(prefix.clone()));
    }
    if let Some(client_ip) = search.client_ip {
        // As the gateway records clients: an IPv4 address mapped into IPv6 as the IPv4 one.
        conditions.push("client_ip = ?");
        params.push(Value::Text(client_ip.to_canonical().to_string()));
    }
    if let Some(consumer) = &search.consumer {
        conditions.push("consumer = ?");
        params.push(Value::Text(consumer.clone()));
    }
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests WHERE {}
         ORDER BY ts DESC, request_key DESC LIMIT {limit}",
        conditions.join(" AND ")
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(duckdb::params_from_iter(params), request_row)?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_writes_and_refuses_the_rest() {
        let cursor = Cursor {
            ts_us: 1_700_000_000_123_456,
            request_key: 42,
        };
        assert_eq!(cursor.to_string().parse(), Ok(cursor));
        for bad in ["", "12", "12.", ".3", "a.b", "1.2.3", "1.-2"] {
            assert_eq!(bad.parse::<Cursor>(), Err(BadCursor), "{bad:?}");
        }
    }
}
