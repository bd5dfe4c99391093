//! The SQL endpoint on the admin listener: `POST /api/sql` (the query as JSON `{"sql": ...}` or
//! as `text/plain`), and the named queries, `GET /api/queries` and `GET /api/queries/{name}`.
//! Results are JSON, CSV (`Accept: text/csv`) or Parquet (`Accept:
//! application/vnd.apache.parquet`); every refusal is a JSON error with DuckDB's message when it
//! has one. Queries run on blocking threads, never on the async workers.

use super::admin::error;
use super::Shared;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lookout_analytics::sql::{ResultFormat, SqlError, CANNED_QUERIES};
use lookout_analytics::Store;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Longest query text accepted.
const MAX_QUERY_BYTES: usize = 64 * 1024;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/api/sql",
            // Longer queries are refused as they arrive, not after buffering axum's default 2 MB.
            post(run_sql).layer(DefaultBodyLimit::max(MAX_QUERY_BYTES)),
        )
        .route("/api/queries", get(list_queries))
        .route("/api/queries/{name}", get(run_named))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

/// A refusal before the query runs.
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

async fn run_sql(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let store = store_of(&shared)?;
    let body = body.map_err(body_refusal)?;
    let sql = query_text(&headers, &body)?;
    let format = result_format(&headers);
    Ok(respond(format, move || store.query(&sql)).await)
}

async fn list_queries() -> Response {
    Json(serde_json::json!({ "queries": CANNED_QUERIES })).into_response()
}

async fn run_named(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let store = store_of(&shared)?;
    refuse_unknown_params(&name, &params)?;
    let format = result_format(&headers);
    Ok(respond(format, move || {
        store.query_canned(&name, |param| params.get(param).map(String::as_str))
    })
    .await)
}

/// A parameter the named query does not take is refused rather than ignored: a caller who
/// believes `?minutes=5` narrows a query must not be answered for the whole hour.
fn refuse_unknown_params(name: &str, given: &HashMap<String, String>) -> Result<(), Refusal> {
    let Some(query) = CANNED_QUERIES.iter().find(|q| q.name == name) else {
        return Ok(()); // the store answers 404 for the name itself
    };
    let Some(unknown) = given.keys().find(|key| !query.params.contains(&key.as_str())) else {
        return Ok(());
    };
    let takes = match query.params {
        [] => "none".to_owned(),
        params => params.join(", "),
    };
    Err(Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "unknown_parameter",
        message: format!("query `{name}` takes no parameter `{unknown}` (it takes: {takes})"),
    })
}

pub(super) fn store_of(shared: &Shared) -> Result<Store, Refusal> {
    shared.store.clone().ok_or_else(|| Refusal {
        status: StatusCode::NOT_FOUND,
        code: "analytics_off",
        message: "the analytics store is off in this gateway's config (analytics.store: off)".into(),
    })
}

fn result_format(headers: &HeaderMap) -> ResultFormat {
    ResultFormat::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

/// A body that could not be read: too long for a query, or cut off.
fn body_refusal(rejection: BytesRejection) -> Refusal {
    let status = rejection.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        let message = format!("the query is longer than {MAX_QUERY_BYTES} bytes, the most accepted");
        return Refusal {
            status,
            code: "query_too_large",
            message,
        };
    }
    Refusal {
        status,
        code: "unreadable_body",
        message: rejection.body_text(),
    }
}

/// The query from a JSON body (`{"sql": "..."}`) or a plain-text one.
fn query_text(headers: &HeaderMap, body: &[u8]) -> Result<String, Refusal> {
    let refuse = |status, code, message| Refusal {
        status,
        code,
        message,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    if content_type.starts_with("application/json") {
        serde_json::from_slice::<SqlRequest>(body)
            .map(|request| request.sql)
            .map_err(|e| {
                let message = format!("the body is not a JSON object like {{\"sql\": \"SELECT ...\"}}: {e}");
                refuse(StatusCode::BAD_REQUEST, "invalid_json", message)
            })
    } else if content_type.starts_with("text/plain") {
        String::from_utf8(body.to_vec()).map_err(|_| {
            refuse(
                StatusCode::BAD_REQUEST,
                "invalid_text",
                "the query is not UTF-8".into(),
            )
        })
    } else {
        let message = format!("`{content_type}` is not accepted: send application/json or text/plain");
        Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        ))
    }
}

/// Runs `query` on a blocking thread and answers with its result in `format`, or its error.
async fn respond<F>(format: ResultFormat, query: F) -> Response
where
    F: FnOnce() -> Result<lookout_analytics::sql::QueryResult, SqlError> + Send + 'static,
{
    let ran = tokio::task::spawn_blocking(move || {
        let result = query()?;
        let body = result.encode(format)?;
        Ok::<_, SqlError>((body, result.rows, result.truncated))
    })
    .await;
    match ran {
        Ok(Ok((body, rows, truncated))) => {
            let mut response = ([(header::CONTENT_TYPE, format.content_type())], body).into_response();
            let headers = response.headers_mut();
            headers.insert("x-lookout-row-count", HeaderValue::from(rows));
            headers.insert(
                "x-lookout-truncated",
                HeaderValue::from_static(if truncated { "true" } else { "false" }),
            );
            response
        }
        Ok(Err(sql_error)) => sql_refusal(&sql_error),
        Err(join_error) => panicked(&join_error),
    }
}

/// The store's refusal of a query, with its status and code.
pub(super) fn sql_refusal(sql_error: &SqlError) -> Response {
    let status = StatusCode::from_u16(sql_error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, sql_error.code(), sql_error.to_string())
}

/// A query whose blocking thread panicked (a bug): logged, and answered 500.
pub(super) fn panicked(join_error: &tokio::task::JoinError) -> Response {
    tracing::error!(%join_error, "a query of the store panicked");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the query failed unexpectedly".into(),
    )
}
