//! Who calls: the consumers or client addresses with the most requests, server errors or
//! refusals over a window, each with its figures. Read from the requests themselves, so the
//! percentiles are exact and the window ends at the latest request stored (the rollups keep no
//! client address, and a p99 of minutes' p99s would be none).

use super::at;
use duckdb::Connection;
use serde::Serialize;

/// Who a caller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// The consumer an API key or token named; requests without one are one caller, `None`.
    Consumer,
    /// The client's address, as the gateway recorded it.
    Client,
}

impl CallerKind {
    fn column(self) -> &'static str {
        match self {
            CallerKind::Consumer => "consumer",
            CallerKind::Client => "client_ip",
        }
    }
}

/// What the callers are ranked by, most first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    Requests,
    /// A 5xx, or a gRPC call that failed on the server's side, as error ratios count.
    ServerErrors,
    /// Turned away by a policy at the edge (auth, rate limit, attack filter, ...).
    Refused,
}

impl Rank {
    fn order(self) -> &'static str {
        match self {
            Rank::Requests => "requests DESC",
            Rank::ServerErrors => "server_errors DESC, requests DESC",
            Rank::Refused => "refused DESC, requests DESC",
        }
    }
}

/// One caller's requests in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Caller {
    /// The consumer or address; `None`: the requests no consumer was named for.
    pub name: Option<String>,
    pub requests: u64,
    pub server_errors: u64,
    pub refused: u64,
    /// Of all its requests, refused ones included: what the caller saw.
    pub p99_us: f64,
    pub bytes_out: u64,
}

/// The top callers, and what they are a part of.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Callers {
    pub top: Vec<Caller>,
    /// Every caller's requests in the window, the ones not listed included.
    pub requests: u64,
    /// How many callers there were.
    pub callers: u64,
}

/// The `limit` callers of `kind` with the most of `rank` since `since_us` (mirrored copies left
/// out), ties broken by name.
pub fn top(
    conn: &Connection,
    kind: CallerKind,
    rank: Rank,
    since_us: i64,
    limit: usize,
) -> duckdb::Result<Callers> {
    let column = kind.column();
    let sql = format!(
        concat!(
            "SELECT {column}, count(*) AS requests,
                    count(*) FILTER (WHERE ",
            server_error!(),
            ") AS server_errors,
                    count(*) FILTER (WHERE blocked_by IS NOT NULL) AS refused,
                    quantile_cont(duration_us, 0.99), sum(bytes_out)::UBIGINT,
                    sum(count(*)) OVER ()::UBIGINT, count(*) OVER ()
             FROM requests WHERE ts >= ? AND NOT mirrored
             GROUP BY {column} ORDER BY {order}, {column} NULLS LAST LIMIT {limit}"
        ),
        column = column,
        order = rank.order(),
        limit = limit,
    );
    let mut statement = conn.prepare(&sql)?;
    let mut callers = Callers::default();
    let mut rows = statement.query([at(since_us)])?;
    while let Some(row) = rows.next()? {
        callers.requests = row.get(6)?;
        callers.callers = row.get(7)?;
        callers.top.push(Caller {
            name: row.get(0)?,
            requests: row.get(1)?,
            server_errors: row.get(2)?,
            refused: row.get(3)?,
            p99_us: row.get(4)?,
            bytes_out: row.get(5)?,
        });
    }
    Ok(callers)
}
