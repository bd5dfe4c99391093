//! Read-only SQL over the store, for SREs and the dashboard. Three walls stand between a query
//! and harm, so that no single mistake opens the store:
//!
//! 1. DuckDB's own parser must find exactly one SELECT-shaped statement (SELECT, WITH, VALUES,
//!    DESCRIBE, SUMMARIZE, SHOW); anything else (COPY, ATTACH, INSTALL, SET, PRAGMA, DDL, DML)
//!    is refused before it runs ([`guard`]).
//! 2. It runs inside a read-only transaction, which is rolled back.
//! 3. The database itself has external access off (only the fleet directory is readable) and its
//!    configuration locked, so no statement can reach a file, the network or a setting.
//!
//! Every query has a time limit (it is interrupted when over) and a row limit (the result says
//! when it was truncated); at most a few run at once.

mod canned;
mod format;
mod guard;
mod run;

pub use canned::{CannedQuery, CANNED_QUERIES};
pub use format::ResultFormat;
pub use run::{Column, QueryResult};

use std::time::Duration;

/// Why a query did not run or did not finish. Each maps to an HTTP status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("the query is empty")]
    Empty,
    #[error("only one SELECT, WITH, VALUES, DESCRIBE, SUMMARIZE or SHOW statement may run; this is not one")]
    NotReadOnly,
    #[error("only one statement may run; this has {0}")]
    MultipleStatements(usize),
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Failed(String),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("{0} queries are already running; try again shortly")]
    Busy(usize),
    #[error("the analytics store is unavailable; the gateway is reopening it")]
    Unavailable,
    #[error("unknown query {0:?}")]
    UnknownQuery(String),
    #[error("missing parameter {0:?}")]
    MissingParameter(&'static str),
    #[error("a single row of the result is over the {0}-byte result limit (analytics.sql.max_result_size); select fewer or shorter columns")]
    ResultTooLarge(usize),
    #[error("cannot encode the result: {0}")]
    Encode(String),
}

impl SqlError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            SqlError::Empty
            | SqlError::NotReadOnly
            | SqlError::MultipleStatements(_)
            | SqlError::Syntax(_)
            | SqlError::Failed(_)
            | SqlError::MissingParameter(_) => 400,
            SqlError::ResultTooLarge(_) => 422,
            SqlError::Forbidden(_) => 403,
            SqlError::UnknownQuery(_) => 404,
            SqlError::Timeout(_) => 408,
            SqlError::Busy(_) => 429,
            SqlError::Encode(_) => 500,
            SqlError::Unavailable => 503,
        }
    }

    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            SqlError::Empty => "empty_query",
            SqlError::NotReadOnly => "not_read_only",
            SqlError::MultipleStatements(_) => "multiple_statements",
            SqlError::Syntax(_) => "syntax_error",
            SqlError::Forbidden(_) => "forbidden",
            SqlError::Failed(_) => "query_failed",
            SqlError::Timeout(_) => "timeout",
            SqlError::Busy(_) => "busy",
            SqlError::Unavailable => "store_unavailable",
            SqlError::UnknownQuery(_) => "unknown_query",
            SqlError::MissingParameter(_) => "missing_parameter",
            SqlError::ResultTooLarge(_) => "result_too_large",
            SqlError::Encode(_) => "encode_failed",
        }
    }
}
