//! Axum answers a few refusals itself, before any handler runs: a method a path does not take
//! (405, with no body), a body over the size limit or of the wrong type, a query string, path
//! or form that does not parse (a line of plain text). [`PlainRefusal`] reads one back, so that
//! a listener can answer it in its own format: the dashboard's error page here, JSON on the
//! gateway's admin API.

use axum::body::to_bytes;
use axum::http::{header, Method, StatusCode};
use axum::response::Response;

/// Axum's own refusals are one short line; anything longer is cut.
const MAX_TEXT: usize = 4096;

/// A refusal axum wrote itself, read back. (Axum adds a 405's `Allow` header after the layers
/// of a route have run, so the answer in the listener's format gets it too.)
pub struct PlainRefusal {
    pub status: StatusCode,
    /// What the message says was wrong.
    pub message: String,
}

impl PlainRefusal {
    /// The refusal in `response`, unless it is a success or already of `own_type` (a
    /// content-type prefix: every handler of the listener answers errors in it).
    pub async fn read(method: &Method, response: Response, own_type: &str) -> Result<Self, Response> {
        let status = response.status();
        let own = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(own_type));
        if own || !(status.is_client_error() || status.is_server_error()) {
            return Err(response);
        }
        let message = if status == StatusCode::METHOD_NOT_ALLOWED {
            format!("this address does not take {method}; its Allow header lists those it takes")
        } else {
            let text = to_bytes(response.into_body(), MAX_TEXT).await.unwrap_or_default();
            String::from_utf8_lossy(&text).trim().to_owned()
        };
        Ok(PlainRefusal { status, message })
    }

    /// `method_not_allowed` for 405, `payload_too_large` for 413, … (the reason phrase).
    pub fn code(&self) -> String {
        self.reason().to_ascii_lowercase().replace([' ', '-'], "_")
    }

    /// `Method Not Allowed` for 405, …
    pub fn reason(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Refused")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;

    async fn refusal(response: Response) -> PlainRefusal {
        match PlainRefusal::read(&Method::DELETE, response, "application/json").await {
            Ok(refusal) => refusal,
            Err(response) => panic!("not read as a refusal: {}", response.status()),
        }
    }

    #[tokio::test]
    async fn a_405_names_the_method() {
        let refusal = refusal(StatusCode::METHOD_NOT_ALLOWED.into_response()).await;
        assert_eq!(refusal.code(), "method_not_allowed");
        assert!(refusal.message.starts_with("this address does not take DELETE;"));
    }

    #[tokio::test]
    async fn plain_text_becomes_the_message() {
        let response = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded\n").into_response();
        let refusal = refusal(response).await;
        assert_eq!(refusal.code(), "payload_too_large");
        assert_eq!(refusal.message, "length limit exceeded");
    }

    #[tokio::test]
    async fn successes_and_answers_in_the_own_type_pass() {
        let ok = PlainRefusal::read(&Method::GET, "fine".into_response(), "application/json").await;
        assert!(ok.is_err());
        let own = (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response();
        assert!(PlainRefusal::read(&Method::GET, own, "application/json")
            .await
            .is_err());
    }
}
