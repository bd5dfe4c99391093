//! Storing a response while it streams to the client that missed: the body's frames are kept
//! (reference-counted, not copied) until it ends, then stored whole. A body over the route's
//! size bound, an error, or a client that leaves first means nothing is stored.

use super::coalesce::{FillLock, UpstreamFailed};
use super::lookup::has_directive;
use super::{CacheKey, Entry, RouteCache, Stored};
use crate::body::{declared_larger_than, PooledBody};
use bytes::{Bytes, BytesMut};
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, ETAG, EXPIRES, IF_MODIFIED_SINCE, IF_NONE_MATCH,
    LAST_MODIFIED, SET_COOKIE, VARY,
};
use http::request::Parts;
use http::{Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Either;
use http_cache_semantics::{AfterResponse, CacheOptions, CachePolicy};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

/// The body of an upstream response: passed through, or passed through and stored.
pub(crate) type FetchedBody = Either<PooledBody, CacheFill>;

/// What a miss needs to store the response it will get.
pub(crate) struct Ticket {
    route: Arc<RouteCache>,
    key: CacheKey,
    /// The request as a GET (what the upstream is asked, a HEAD's miss included): its URI and
    /// headers, which the stored policy keeps (for `Vary`); boxed, as only misses of cached
    /// routes carry one.
    request: Box<Request<()>>,
    /// Held while the response is fetched and stored, when other misses wait for it.
    lock: Option<FillLock>,
    /// The stale response kept for this key: to revalidate, or to answer with if the upstream
    /// fails (`stale_if_error`).
    stale: Option<Arc<Stored>>,
    /// Whether the request asks the upstream, with the stale response's validators, whether
    /// that response is still current.
    revalidating: bool,
    /// The client asked HEAD: the response is fetched with a GET, to be stored, and the client
    /// given its head alone (nginx's `proxy_cache_convert_head`, Varnish's default).
    head: bool,
}

impl Ticket {
    pub(super) fn new(
        route: Arc<RouteCache>,
        key: CacheKey,
        request: &Parts,
        lock: Option<FillLock>,
        stale: Option<Arc<Stored>>,
    ) -> Self {
        // What the upstream is asked, and what the stored response answers: a GET.
        let mut copy = Request::new(());
        *copy.method_mut() = Method::GET;
        *copy.uri_mut() = request.uri.clone();
        *copy.headers_mut() = request.headers.clone();
        Ticket {
            route,
            key,
            request: Box::new(copy),
            lock,
            stale,
            revalidating: false,
            head: request.method == Method::HEAD,
        }
    }

    /// Whether the client asked HEAD, so that the upstream is to be asked GET instead and the
    /// body stored without reaching the client (see [`Ticket::fill_for_head`]).
    pub(crate) fn for_head(&self) -> bool {
        self.head
    }

    /// Asks the upstream whether the stale response kept for this key is still current
    /// (`If-None-Match`, `If-Modified-Since`, from its validators), unless the client asked a
    /// question of its own; a 304 then refreshes it (see [`Ticket::refresh`]).
    pub(crate) fn ask_if_modified(&mut self, headers: &mut HeaderMap) {
        let Some(stale) = self.stale.as_deref().filter(|stale| stale.revalidatable) else {
            return;
        };
        if headers.contains_key(IF_NONE_MATCH) || headers.contains_key(IF_MODIFIED_SINCE) {
            return;
        }
        let mut conditions = super::lookup::revalidation_headers(stale, &self.request);
        for name in [IF_NONE_MATCH, IF_MODIFIED_SINCE] {
            if let Some(value) = conditions.remove(&name) {
                headers.insert(name, value);
                self.revalidating = true;
            }
        }
    }

    /// The stale response brought up to date, when the upstream answered the gateway's own
    /// question with 304 Not Modified: stored again for its new lifetime and answered whole.
    /// The ticket back otherwise.
    pub(crate) fn refresh<B>(self, response: &Response<B>) -> Result<Response<Bytes>, Ticket> {
        let stale = match &self.stale {
            Some(stale) if self.revalidating => stale.clone(),
            _ => return Err(self),
        };
        let now = SystemTime::now();
        let asked = super::lookup::revalidation_headers(&stale, &self.request);
        let answered = with_validators_asked(response, &asked);
        let AfterResponse::NotModified(policy, head) =
            stale.policy.after_response(&*self.request, &answered, now)
        else {
            return Err(self);
        };
        let fresh_for = policy.time_to_live(now);
        let names = vary_names(&head.headers);
        if let (true, false, Some(names)) = (policy.is_storable(), fresh_for.is_zero(), names) {
            self.pending(policy, fresh_for, names, stale.revalidatable)
                .store(stale.body.clone());
        }
        Ok(Response::from_parts(head, stale.body.clone()))
    }

    /// Tells the requests waiting for this one's fetch that the upstream failed it, so that
    /// they answer stale at once rather than try it each in turn.
    pub(crate) fn upstream_failed(&self, failed: UpstreamFailed) {
        if let Some(lock) = &self.lock {
            lock.upstream_failed(failed);
        }
    }

    /// The stale response to answer with now that the upstream failed: when the route serves
    /// one (`stale_if_error`), the cache still holds it, and its origin did not forbid it.
    /// Counted as a stale answer.
    pub(crate) fn stale_answer(&self) -> Option<Response<Bytes>> {
        self.route.stale_if_error?;
        let answer = super::lookup::stale_answer(self.stale.as_deref()?, &self.request)?;
        self.route.counts.stale_answers.fetch_add(1, Ordering::Relaxed);
        Some(answer)
    }

    /// The response, its body stored as it streams if the response may be kept.
    pub(crate) fn fill(self, response: Response<PooledBody>) -> Response<FetchedBody> {
        match self.admit(&response) {
            // An empty body may never be polled.
            Some(pending) if response.body().is_end_stream() => {
                pending.store(Bytes::new());
                response.map(Either::Left)
            }
            Some(pending) => response.map(|body| Either::Right(CacheFill::new(body, pending))),
            None => response.map(Either::Left),
        }
    }

    /// The answer to a HEAD fetched with a GET: the response's head, its body read into the cache
    /// by a task of its own (the client's connection never reads it), as far as the route keeps
    /// it. A body that may not be stored is dropped unread.
    pub(crate) fn fill_for_head(self, response: Response<PooledBody>) -> Response<()> {
        let (head, body) = self.fill(response).into_parts();
        if let Either::Right(fill) = body {
            tokio::spawn(fill.drain());
        }
        Response::from_parts(head, ())
    }

    /// Stores a response the gateway made whole (a composition's), if it may be kept.
    pub(crate) fn store_whole(self, response: &Response<Bytes>) {
        if response.body().len() as u64 > self.route.max_entry_size {
            return;
        }
        if let Some(pending) = self.admit(response) {
            pending.store(response.body().clone());
        }
    }

    fn admit<B>(self, response: &Response<B>) -> Option<Pending> {
        let Some((policy, fresh_for, names)) = self.storable(response) else {
            if self.lock.is_some() {
                pass(&self.route, self.key);
            }
            return None;
        };
        let headers = response.headers();
        let revalidatable = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
        Some(self.pending(policy, fresh_for, names, revalidatable))
    }

    fn pending(
        self,
        policy: CachePolicy,
        fresh_for: Duration,
        names: Vec<HeaderName>,
        revalidatable: bool,
    ) -> Pending {
        // Kept past its freshness for as long as it may still answer when the upstream fails,
        // or, with a validator, as long again as it was fresh, to be revalidated.
        let revalidation = if revalidatable { fresh_for } else { Duration::ZERO };
        let ttl = fresh_for + revalidation.max(self.route.stale_if_error.unwrap_or_default());
        let key = match names {
            names if names.is_empty() => Slot::Single(self.key),
            names => {
                let varied = self.key.varied(&names, self.request.headers());
                Slot::Varied {
                    primary: self.key,
                    names: names.into(),
                    varied,
                }
            }
        };
        Pending {
            route: self.route,
            key,
            policy,
            ttl,
            revalidatable,
            lock: self.lock,
        }
    }

    /// The response's policy, how long it stays fresh and the request headers it varies on,
    /// when it may be stored.
    fn storable<B>(&self, response: &Response<B>) -> Option<(CachePolicy, Duration, Vec<HeaderName>)> {
        // A response that sets a cookie is one client's: handing it to others would share a session.
        if declared_larger_than(response.headers(), self.route.max_entry_size)
            || response.headers().contains_key(SET_COOKIE)
        {
            return None;
        }
        let now = SystemTime::now();
        let mut view = Response::new(());
        *view.status_mut() = response.status();
        *view.headers_mut() = response.headers().clone();
        if let Some(ttl) = self.route.default_ttl {
            give_default_lifetime(view.headers_mut(), ttl);
        }
        let options = CacheOptions {
            // Only explicit lifetimes (or the route's default), never a guess from Last-Modified.
            cache_heuristic: 0.0,
            ..CacheOptions::default()
        };
        let policy = CachePolicy::new_options(&*self.request, &view, now, options);
        let fresh_for = policy.time_to_live(now);
        if !policy.is_storable() || fresh_for.is_zero() {
            return None;
        }
        let names = vary_names(view.headers())?;
        Some((policy, fresh_for, names))
    }
}

/// The head of a 304 to the gateway's own question, with the validators it asked with where
/// it gives none: some servers leave `ETag` out of a 304, and the question named one stored
/// response only, so the answer is about that one.
fn with_validators_asked<B>(response: &Response<B>, asked: &HeaderMap) -> Response<()> {
    let mut head = Response::new(());
    *head.status_mut() = response.status();
    *head.headers_mut() = response.headers().clone();
    let headers = head.headers_mut();
    let given = headers.contains_key(ETAG) || headers.contains_key(LAST_MODIFIED);
    for (asked_with, validator) in [(IF_NONE_MATCH, ETAG), (IF_MODIFIED_SINCE, LAST_MODIFIED)] {
        if let (false, Some(value)) = (given, asked.get(&asked_with)) {
            headers.insert(validator, value.clone());
        }
    }
    head
}

/// How long misses of a key whose response could not be stored go straight to the upstream.
const PASS_FOR: Duration = Duration::from_secs(30);

/// After a response that may not be stored, later misses of its key go straight to the
/// upstream for [`PASS_FOR`] instead of waiting for one another's fetch (Varnish's
/// hit-for-miss): an uncacheable resource on a cached route would otherwise make every request
/// but one wait for another's answer first. Marked only by a miss that others waited for; an
/// entry already there (a stale response kept for `stale_if_error`) stays.
fn pass(route: &RouteCache, key: CacheKey) {
    route
        .cache
        .entries
        .entry(key)
        .or_insert(Entry::Pass { ttl: PASS_FOR });
}

/// A response that gives no lifetime of its own gets the route's, as `s-maxage` (which only
/// shared caches read), so the client's view of the response is unchanged.
fn give_default_lifetime(headers: &mut HeaderMap, ttl: Duration) {
    let explicit = headers.contains_key(EXPIRES)
        || has_directive(headers, "max-age")
        || has_directive(headers, "s-maxage");
    if !explicit {
        if let Ok(value) = HeaderValue::try_from(format!("s-maxage={}", ttl.as_secs().max(1))) {
            headers.append(CACHE_CONTROL, value);
        }
    }
}

/// The request headers a response varies on; `None` for `Vary: *`, which nothing matches.
fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names = Vec::new();
    for name in headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        if name == "*" {
            return None;
        }
        names.push(HeaderName::try_from(name.to_ascii_lowercase()).ok()?);
    }
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    Some(names)
}

enum Slot {
    Single(CacheKey),
    Varied {
        primary: CacheKey,
        names: Arc<[HeaderName]>,
        varied: CacheKey,
    },
}

struct Pending {
    route: Arc<RouteCache>,
    key: Slot,
    policy: CachePolicy,
    ttl: Duration,
    revalidatable: bool,
    /// Released when the response is stored, or when it is dropped unstored.
    lock: Option<FillLock>,
}

impl Pending {
    /// The body turned out larger than the route keeps: marked as one not to wait for.
    fn too_large(self) {
        if self.lock.is_some() {
            let primary = match self.key {
                Slot::Single(key) | Slot::Varied { primary: key, .. } => key,
            };
            pass(&self.route, primary);
        }
    }

    fn store(self, body: Bytes) {
        let entries = &self.route.cache.entries;
        let ttl = self.ttl;
        let response = Entry::Response(Arc::new(Stored {
            policy: self.policy,
            body,
            revalidatable: self.revalidatable,
            ttl,
        }));
        match self.key {
            Slot::Single(key) => entries.insert(key, response),
            Slot::Varied {
                primary,
                names,
                varied,
            } => {
                entries.insert(varied, response);
                entries.insert(primary, Entry::Vary { names, ttl });
            }
        }
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct CacheFill {
        #[pin]
        inner: PooledBody,
        chunks: Vec<Bytes>,
        size: u64,
        // `None` once the response turned out not to be storable after all. Boxed: the policy is
        // large, and every response body, of any route, has room for its largest variant.
        pending: Option<Box<Pending>>,
    }
}

impl CacheFill {
    fn new(inner: PooledBody, pending: Pending) -> Self {
        CacheFill {
            inner,
            chunks: Vec::new(),
            size: 0,
            pending: Some(Box::new(pending)),
        }
    }
}

impl CacheFill {
    /// Reads the body to its end, storing it, or until it turns out larger than the route keeps
    /// (or fails): read by no one else, it is read only as far as it may be stored.
    async fn drain(self) {
        let mut fill = std::pin::pin!(self);
        while fill.pending.is_some() {
            match std::future::poll_fn(|cx| fill.as_mut().poll_frame(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    }
}

impl Body for CacheFill {
    type Data = Bytes;
    type Error = <PooledBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), this.pending.as_ref()) {
                    *this.size += data.len() as u64;
                    if *this.size > pending.route.max_entry_size {
                        if let Some(pending) = this.pending.take() {
                            pending.too_large();
                        }
                        this.chunks.clear();
                    } else {
                        this.chunks.push(data.clone());
                    }
                }
                // hyper stops polling a body that says it has ended, so the last frame may be
                // the last call.
                if this.inner.is_end_stream() {
                    store(this.pending, this.chunks);
                }
            }
            Poll::Ready(Some(Err(_))) => *this.pending = None,
            Poll::Ready(None) => store(this.pending, this.chunks),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn store(pending: &mut Option<Box<Pending>>, chunks: &mut Vec<Bytes>) {
    if let Some(pending) = pending.take() {
        pending.store(concat(std::mem::take(chunks)));
    }
}

fn concat(chunks: Vec<Bytes>) -> Bytes {
    match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.into_iter().next().unwrap_or_default(),
        _ => {
            let mut whole = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
            for chunk in chunks {
                whole.extend_from_slice(&chunk);
            }
            whole.freeze()
        }
    }
}
