//! Client connections that ended in error, counted by why (`lookout_proxy_connection_errors_total`):
//! before a request reached the pipeline, and so with no event, route or span to say it — hyper
//! answers a head it cannot parse with a bare 400 or 431 and closes the connection, so without
//! this count a client (or an attack) failing that way would leave no trace in the gateway's
//! figures — and closed because the client stopped reading its response (whose request's event
//! says `client_aborted`, as if it had left).

use super::client_io::{NoRequest, SendTimeout};
use crate::stats::{Metrics, CONNECTION_ERRORS};
use metrics::{Counter, Label};
use std::error::Error as StdError;
use std::io;

/// Why a connection ended in error before its request was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// A head hyper could not parse: answered 400.
    Malformed,
    /// A head past the parser's buffer or its 100 header fields: answered 431.
    HeadTooLarge,
    /// Nothing, or too little to tell the protocol, within `header_read_timeout` of connecting.
    NoRequest,
    /// The client closed the connection in the middle of a request's head.
    Incomplete,
    /// The client took nothing of a response for `send_timeout`.
    SendTimeout,
}

impl Reason {
    const ALL: [Reason; 5] = [
        Reason::Malformed,
        Reason::HeadTooLarge,
        Reason::NoRequest,
        Reason::Incomplete,
        Reason::SendTimeout,
    ];

    fn label(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed_request",
            Reason::HeadTooLarge => "head_too_large",
            Reason::NoRequest => "no_request",
            Reason::Incomplete => "incomplete_request",
            Reason::SendTimeout => "send_timeout",
        }
    }

    /// The reason a connection's error counts under, if it counts at all: a head trickled past
    /// `header_read_timeout` is not told apart by hyper from a keep-alive connection left idle
    /// that long, which is normal, and resets are the network's.
    fn of(error: &(dyn StdError + 'static)) -> Option<Reason> {
        if let Some(error) = error.downcast_ref::<hyper::Error>() {
            return if error.is_parse_too_large() {
                Some(Reason::HeadTooLarge)
            } else if error.is_parse() {
                Some(Reason::Malformed)
            } else if error.is_incomplete_message() {
                Some(Reason::Incomplete)
            } else {
                // A write hyper was making failed: the client's stream says why.
                error.source().and_then(Reason::of_io)
            };
        }
        Reason::of_io(error)
    }

    /// The reason of one of the client stream's own errors (see `ClientIo`).
    fn of_io(error: &(dyn StdError + 'static)) -> Option<Reason> {
        let io = error.downcast_ref::<io::Error>()?.get_ref()?;
        if io.is::<NoRequest>() {
            Some(Reason::NoRequest)
        } else if io.is::<SendTimeout>() {
            Some(Reason::SendTimeout)
        } else {
            None
        }
    }
}

/// The counters, resolved once per listener.
pub(crate) struct ConnectionErrors {
    counters: Vec<Counter>,
}

impl ConnectionErrors {
    /// Registers every reason's series, at zero until a connection fails that way.
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let counters = Reason::ALL
            .iter()
            .map(|reason| metrics.counter(CONNECTION_ERRORS, vec![Label::new("reason", reason.label())]))
            .collect();
        ConnectionErrors { counters }
    }

    /// Counts a connection's error when it is one of the reasons, and logs it at debug level.
    pub(crate) fn record(&self, error: &(dyn StdError + 'static), peer: std::net::SocketAddr) {
        let reason = Reason::of(error);
        if let Some(reason) = reason {
            // `ALL` lists the reasons in declaration order, so a reason's discriminant is its index.
            self.counters[reason as usize].increment(1);
        }
        let reason = reason.map(Reason::label);
        tracing::debug!(%error, %peer, ?reason, "client connection ended with an error");
    }
}
