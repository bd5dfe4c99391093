//! A plain HTTP GET for the command line's own requests to a gateway's admin listener: the
//! container's health check, and the canary gate's report.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `GET address`, with the admin token when given: the status and the whole body.
pub(crate) async fn get(address: &str, token: Option<&str>) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let mut request = http::Request::get(address);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("invalid URL {address:?}"))?;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .with_context(|| format!("cannot reach {address}"))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
