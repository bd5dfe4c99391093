//! `lookout health-check [URL]`: a container health check without a shell or curl in the
//! image. Exits 0 when the URL answers 2xx within the timeout, 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

/// The gateway's liveness probe on the default admin listener.
pub(crate) const DEFAULT_URL: &str = "http://127.0.0.1:9901/healthz";

pub(crate) fn health_check(url: &str, timeout: Duration) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("unhealthy: cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(async { tokio::time::timeout(timeout, get_status(url)).await }) {
        Ok(Ok(status)) if status.is_success() => ExitCode::SUCCESS,
        Ok(Ok(status)) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("unhealthy: {url}: {error}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("unhealthy: {url} did not answer within {timeout:?}");
            ExitCode::FAILURE
        }
    }
}

async fn get_status(url: &str) -> Result<http::StatusCode, String> {
    let (status, _) = crate::admin_client::get(url, None)
        .await
        .map_err(|error| format!("{error:#}"))?;
    Ok(status)
}
