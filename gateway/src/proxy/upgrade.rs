//! Protocol upgrades (WebSocket and other `Upgrade` requests): once the upstream answers 101, the
//! two upgraded connections are spliced together by a task of their own.

use crate::body::PooledBody;
use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::sync::OwnedSemaphorePermit;

/// Splices the client's and the upstream's upgraded connections and returns the 101 response
/// for the client. The tunnel keeps the client connection's `place` under the connection cap
/// until it closes: the HTTP connection that carried the upgrade ends at once.
pub(super) fn tunnel(
    mut response: Response<PooledBody>,
    client: Option<OnUpgrade>,
    place: Arc<OwnedSemaphorePermit>,
) -> Response<PooledBody> {
    let upstream = hyper::upgrade::on(&mut response);
    let Some(client) = client else {
        // An HTTP/2 client cannot take an HTTP/1.1 upgrade; it gets the 101 and nothing more.
        return response;
    };
    tokio::spawn(async move {
        let _place = place;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "protocol upgrade failed");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%error, "upgraded connection ended with an error");
        }
    });
    response
}
