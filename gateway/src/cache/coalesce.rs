//! Collapsed forwarding: while one request that missed fetches a response that may be stored,
//! the other requests that miss the same key wait for it (up to the route's `coalesce` bound)
//! and are answered from the cache, rather than all going to the upstream at once when a
//! popular entry expires (nginx's `proxy_cache_lock`, Varnish's request coalescing).
//!
//! The first to miss a key holds its [`FillLock`] until its response is stored, or turns out
//! not to be storable, or fails: dropping the lock wakes every waiter. A waiter that still
//! misses then (the response was not stored, or the wait timed out) goes to the upstream
//! itself, without waiting again, so an uncacheable resource does not turn its requests into
//! a queue. When the upstream failed the first, the lock says so ([`UpstreamFailed`]): a
//! waiter that may answer stale then does at once, rather than each trying the failing
//! upstream in turn and making its client wait for the same failure.

use super::CacheKey;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use lookout_analytics::ErrorKind;
use std::sync::Arc;
use tokio::sync::watch;

/// The keys being fetched, each with the channel its waiters watch. Sharded: only misses of
/// cached routes come here, and each takes one shard's lock for an insert or a removal.
#[derive(Debug, Default)]
pub(crate) struct Fills {
    filling: DashMap<CacheKey, Watched>,
}

/// What a waiter watches: `Some` once the leading request found the upstream failing.
pub(crate) type Watched = watch::Receiver<Option<UpstreamFailed>>;

/// The upstream failed the leading request: with no answer (why, as its event says), or with a
/// 500/502/503/504 (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UpstreamFailed(pub(crate) Option<ErrorKind>);

/// Who fetches a key that missed.
pub(crate) enum Claim {
    /// This request: the others wait until the lock is dropped.
    Lead(FillLock),
    /// Another request, whose lock ends when this channel closes.
    Follow(Watched),
}

impl Fills {
    pub(crate) fn claim(self: &Arc<Self>, key: &CacheKey) -> Claim {
        match self.filling.entry(key.clone()) {
            Entry::Occupied(filling) => Claim::Follow(filling.get().clone()),
            Entry::Vacant(vacant) => {
                let (done, watched) = watch::channel(None);
                vacant.insert(watched);
                Claim::Lead(FillLock {
                    held: Box::new(Held {
                        fills: self.clone(),
                        key: key.clone(),
                        done,
                    }),
                })
            }
        }
    }

    /// Keys being fetched now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.filling.len()
    }
}

/// The leading request's hold on a key: dropped once its response is stored or cannot be.
/// Boxed: a ticket carries it through every request's future, cached route or not.
pub(crate) struct FillLock {
    /// Released by its drop.
    held: Box<Held>,
}

impl FillLock {
    /// Tells the waiters, when the lock is dropped, that the upstream failed.
    pub(crate) fn upstream_failed(&self, failed: UpstreamFailed) {
        self.held.done.send_replace(Some(failed));
    }
}

struct Held {
    fills: Arc<Fills>,
    key: CacheKey,
    /// Dropped with the lock: the waiters' `changed()` then returns.
    done: watch::Sender<Option<UpstreamFailed>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        // Only the lock's holder removes its key, and no one inserts over an occupied one, so
        // the entry is this lock's.
        self.fills.filling.remove(&self.key);
    }
}

/// Waits for the leading request of `claim` to be done, at most `bound`; what it found, when
/// the upstream failed it.
pub(crate) async fn wait_for(mut filled: Watched, bound: std::time::Duration) -> Option<UpstreamFailed> {
    // `changed` returns once a failure is told or the sender is gone (also if it already was).
    let _ = tokio::time::timeout(bound, filled.changed()).await;
    *filled.borrow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::KeyParts;
    use std::time::Duration;

    fn key(path: &str) -> CacheKey {
        let request = http::Request::get(path).body(()).expect("request").into_parts().0;
        let parts = KeyParts {
            query: true,
            headers: Vec::new(),
        };
        CacheKey::of(&Arc::from("route"), &parts, &request, Some("host"), None)
    }

    /// Two misses of `path`: the first leads, the second waits on it.
    fn lead_and_follow(fills: &Arc<Fills>, path: &str) -> (FillLock, Watched) {
        let Claim::Lead(lock) = fills.claim(&key(path)) else {
            panic!("the first miss leads");
        };
        let Claim::Follow(waiting) = fills.claim(&key(path)) else {
            panic!("the second waits");
        };
        (lock, waiting)
    }

    #[tokio::test]
    async fn the_first_miss_leads_and_the_others_wait_until_its_lock_is_dropped() {
        let fills = Arc::new(Fills::default());
        let (lock, waiting) = lead_and_follow(&fills, "/a");
        assert!(
            matches!(fills.claim(&key("/b")), Claim::Lead(_)),
            "another key leads its own"
        );
        let waiter = tokio::spawn(wait_for(waiting, Duration::from_secs(30)));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(lock);
        let found = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken when the lock goes")
            .expect("task");
        assert_eq!(found, None, "stored, or not storable: no failure to tell");
        assert_eq!(fills.len(), 0, "the key is free again");
        assert!(matches!(fills.claim(&key("/a")), Claim::Lead(_)));
    }

    #[tokio::test]
    async fn a_wait_that_starts_after_the_lock_went_returns_at_once() {
        let fills = Arc::new(Fills::default());
        let (lock, waiting) = lead_and_follow(&fills, "/a");
        drop(lock);
        tokio::time::timeout(Duration::from_secs(5), wait_for(waiting, Duration::from_secs(30)))
            .await
            .expect("no wake-up is missed");
    }

    #[tokio::test]
    async fn the_waiters_learn_that_the_upstream_failed_the_leader() {
        let fills = Arc::new(Fills::default());
        let (lock, early) = lead_and_follow(&fills, "/a");
        let late = early.clone();
        let waiter = tokio::spawn(wait_for(early, Duration::from_secs(30)));
        let failed = UpstreamFailed(Some(ErrorKind::UpstreamTimeout));
        lock.upstream_failed(failed);
        drop(lock);
        let found = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        assert_eq!(found, Some(failed));
        let found = tokio::time::timeout(Duration::from_secs(5), wait_for(late, Duration::from_secs(30)))
            .await
            .expect("a later wait returns at once");
        assert_eq!(found, Some(failed), "and learns it too");
    }
}
