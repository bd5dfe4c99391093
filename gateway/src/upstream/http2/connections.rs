//! The HTTP/2 connections an instance's requests share, and how many streams each carries.
//! Requests find one with room without a lock (the set is behind an `ArcSwap`); only opening a
//! new one, when none has room or all closed, is serialized per instance, so a burst of
//! requests opens one connection rather than one each. Room is the upstream's
//! `max_concurrent_streams`, which hyper does not read from the peer's settings: unset, one
//! connection takes every request, and past the peer's own limit hyper queues them.

use super::Http2Sender;
use crate::upstream::pool::{connect, SendError, Sender, Target};
use arc_swap::ArcSwap;
use metrics::Counter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The open connections to one instance, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    live: ArcSwap<Vec<Arc<Connection>>>,
    /// Held while a connection opens, so that concurrent requests wait for it instead of
    /// opening their own.
    opening: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
pub(crate) struct Connection {
    sender: Http2Sender,
    streams: AtomicUsize,
}

/// A stream counted on its connection until dropped: with the response's body, or as soon as
/// the exchange failed.
#[derive(Debug)]
pub(crate) struct Stream(Arc<Connection>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stream {
    /// A handle to send the stream's request on its connection.
    pub(super) fn sender(&self) -> Http2Sender {
        self.0.sender.clone()
    }

    pub(super) fn connection(&self) -> &Arc<Connection> {
        &self.0
    }
}

impl Connection {
    /// A stream on this connection, if it is open and has room. The count is checked, then
    /// taken, so concurrent requests may pass `max` by a few: hyper queues those.
    fn stream(self: &Arc<Self>, max: usize) -> Option<Stream> {
        if self.sender.is_closed() || self.streams.load(Ordering::Relaxed) >= max {
            return None;
        }
        self.streams.fetch_add(1, Ordering::Relaxed);
        Some(Stream(self.clone()))
    }
}

impl Connections {
    /// A stream on the oldest open connection with room for one.
    pub(super) fn stream(&self, max: usize) -> Option<Stream> {
        self.live
            .load()
            .iter()
            .find_map(|connection| connection.stream(max))
    }

    /// A stream on a connection another request has just opened, or on a new one (and how long
    /// opening it took). A `fresh` target always gets a new one of its own, which closes when
    /// its stream ends: kept, every such retry would leave one more idle connection open.
    pub(super) async fn open(
        &self,
        target: Target<'_>,
        opened: &Counter,
    ) -> Result<(Stream, Option<Duration>), SendError> {
        let _opening = self.opening.lock().await;
        let other = (!target.fresh).then(|| self.stream(target.max_streams)).flatten();
        if let Some(stream) = other {
            return Ok((stream, None));
        }
        let started = Instant::now();
        let Sender::Http2 { sender, .. } = connect(target).await? else {
            unreachable!("an HTTP/2 target opens HTTP/2 connections")
        };
        opened.increment(1);
        let connection = Arc::new(Connection {
            sender,
            streams: AtomicUsize::new(1),
        });
        if target.fresh {
            return Ok((Stream(connection), Some(started.elapsed())));
        }
        // The closed ones go as the new one comes.
        self.live.rcu(|live| {
            let mut open: Vec<_> = live.iter().filter(|c| !c.sender.is_closed()).cloned().collect();
            open.push(connection.clone());
            open
        });
        Ok((Stream(connection), Some(started.elapsed())))
    }

    /// Stops giving `connection` to requests: it failed, and hyper may not have marked it
    /// closed yet.
    pub(super) fn forget(&self, connection: &Arc<Connection>) {
        self.live.rcu(|live| {
            live.iter()
                .filter(|open| !Arc::ptr_eq(open, connection))
                .cloned()
                .collect::<Vec<_>>()
        });
    }

    /// Lets every connection close once the requests it carries have ended.
    pub(super) fn close(&self) {
        self.live.store(Arc::default());
    }
}
