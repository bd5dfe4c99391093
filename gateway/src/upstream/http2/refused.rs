//! Why a failed request may be sent again: its stream was refused before the upstream did
//! anything with it (RFC 9113 §8.7), whatever its method; or it was lost with its connection and
//! is idempotent.

use crate::upstream::pool::SendError;

/// Whether the request's stream was refused before the upstream did anything with it:
/// - reset with `REFUSED_STREAM`;
/// - above the last stream of a `GOAWAY` (h2 gives such streams the `GOAWAY` as their error;
///   the streams the server did process get the connection's end);
/// - never opened: hyper drops a request waiting for a stream slot (the upstream's
///   `max_concurrent_streams`) when a `GOAWAY` ends the connection, and its only user errors on
///   HTTP/2 are that dropped request's ("dispatch task is gone") and a `CONNECT` with a body,
///   which the gateway does not send.
pub(super) fn is_refused(error: &SendError) -> bool {
    let SendError::Http(error) = error else {
        return false;
    };
    if error.is_user() {
        return true;
    }
    h2_error(error).is_some_and(|h2| {
        h2.is_remote() && (h2.is_go_away() || h2.reason() == Some(h2::Reason::REFUSED_STREAM))
    })
}

/// Whether the connection failed under the request, not the request's stream alone: the server
/// may have processed the request before its connection ended.
pub(super) fn lost_with_connection(error: &hyper::Error) -> bool {
    !h2_error(error).is_some_and(h2::Error::is_reset)
}

/// The HTTP/2 error under hyper's, if the exchange failed on one.
pub(super) fn h2_error(error: &hyper::Error) -> Option<&h2::Error> {
    std::error::Error::source(error)?.downcast_ref::<h2::Error>()
}
