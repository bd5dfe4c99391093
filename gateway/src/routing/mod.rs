//! The route table: which route a request takes, and the path it is forwarded with.
//!
//! Routes are tried in the order they are configured; the first whose every condition holds
//! wins, as in Envoy. Everything here was compiled from config at load time.

mod index;
mod matcher;
mod mirror;
mod normal_path;
mod rewrite;
mod slo;
mod variants;

pub(crate) use index::RouteIndex;
pub(crate) use matcher::{HeaderCondition, HostMatch, PathMatch, RequestMatcher};
pub(crate) use mirror::{Mirror, MirrorCounters, MirrorSlot};
pub(crate) use normal_path::normal_form;
pub(crate) use rewrite::{capture_names, parse_rewrite, PathRewrite};
pub(crate) use slo::{Slo, SloBar};
pub(crate) use variants::{
    sticky_cookie, Variant, VariantWeights, Variants, WeightsError, MAX_VARIANTS, MAX_WEIGHT,
};

use crate::auth::RouteAuth;
use crate::cache::RouteCache;
use crate::compose::Composition;
use crate::compress::CompressPolicy;
use crate::edge::ip::TrustedProxies;
use crate::edge::{EdgePolicy, HeadLimits};
use crate::ratelimit::RateLimit;
use crate::stats::RouteStats;
use crate::traces::QuerySecrets;
use crate::transform::Transform;
use crate::upstream::UpstreamRef;
use http::header::HeaderValue;
use http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// All routes and, through them, all upstreams of one config generation.
#[derive(Debug)]
pub struct RouteTable {
    pub(crate) routes: Vec<Route>,
    /// Which of `routes` a request's path may take.
    pub(crate) index: RouteIndex,
    pub(crate) upstreams: Vec<UpstreamRef>,
    /// Where requests that match no route are counted.
    pub(crate) unmatched: Arc<RouteStats>,
    /// What every request head is held to.
    pub(crate) head_limits: HeadLimits,
    /// Whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: TrustedProxies,
    /// The query parameters that carry credentials, which spans redact.
    pub(crate) query_secrets: Arc<QuerySecrets>,
    /// The config text's fingerprint (`lookout_config_info`): which config this table came from.
    pub(crate) fingerprint: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct Route {
    pub(crate) name: Arc<str>,
    /// The statistics and upstream of a route without variants, or of its first variant.
    pub(crate) stats: Arc<RouteStats>,
    pub(crate) matcher: RequestMatcher,
    pub(crate) rewrite: PathRewrite,
    /// Where the requests go (on a route with variants, its first variant's upstream).
    pub(crate) target: Target,
    /// Canary / A-B: weighted variants, each with its own upstream.
    pub(crate) variants: Option<Variants>,
    pub(crate) timeouts: RouteTimeouts,
    /// Body limits, IP lists, CORS, attack filter.
    pub(crate) edge: EdgePolicy,
    /// API keys and who may pass.
    pub(crate) auth: Option<Arc<RouteAuth>>,
    pub(crate) rate_limit: Option<Arc<RateLimit>>,
    pub(crate) cache: Option<Arc<RouteCache>>,
    /// A share of the requests copied to a shadow upstream.
    pub(crate) mirror: Option<Mirror>,
    pub(crate) transform: Option<Arc<Transform>>,
    /// Text-like responses compressed for clients that take it.
    pub(crate) compress: Option<Arc<CompressPolicy>>,
    /// The share of requests that must be good, and what a good one is.
    pub(crate) slo: Option<Slo>,
}

/// What answers a route's requests.
#[derive(Debug)]
pub(crate) enum Target {
    /// One upstream, which the request is forwarded to.
    Upstream(UpstreamRef),
    /// Several upstream calls whose JSON results are merged (API composition).
    Compose(Arc<Composition>),
}

/// Timeouts bound the wait for response headers; a streaming body may take longer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RouteTimeouts {
    /// The whole exchange, retries included.
    pub(crate) total: Duration,
    /// One attempt.
    pub(crate) per_try: Duration,
}

/// The outcome of routing one request.
pub(crate) struct RouteMatch<'a> {
    pub(crate) route: &'a Route,
    /// Path and query to send upstream when the route changes it (strip-prefix or rewrite);
    /// `None` forwards the client's own, without copying it.
    pub(crate) upstream_path: Option<String>,
    /// The variant the request goes to, on a route with variants.
    pub(crate) variant: Option<&'a Variant>,
    /// The sticky-variant cookie to give the client.
    pub(crate) set_cookie: Option<HeaderValue>,
}

/// A request's [`Target`], its variant taken into account.
#[derive(Clone, Copy)]
pub(crate) enum TargetRef<'a> {
    Upstream(&'a UpstreamRef),
    Compose(&'a Arc<Composition>),
}

impl<'a> RouteMatch<'a> {
    /// Picks the request's variant, on a route that has them.
    pub(crate) fn pick_variant(&mut self, request: &Parts, client_ip: IpAddr) {
        if let Some(variants) = &self.route.variants {
            let pick = variants.pick(&request.headers, client_ip);
            self.variant = variants.list.get(pick.index);
            self.set_cookie = pick.set_cookie;
        }
    }

    /// What answers this request: the variant's upstream, or the route's target.
    pub(crate) fn target(&self) -> TargetRef<'a> {
        match (self.variant, &self.route.target) {
            (Some(variant), _) => TargetRef::Upstream(&variant.upstream),
            (None, Target::Upstream(upstream)) => TargetRef::Upstream(upstream),
            (None, Target::Compose(composition)) => TargetRef::Compose(composition),
        }
    }

    pub(crate) fn stats(&self) -> &'a Arc<RouteStats> {
        self.variant.map_or(&self.route.stats, |v| &v.stats)
    }
}

impl RouteTable {
    pub(crate) fn find(&self, request: &Parts, host: Option<&str>) -> Option<RouteMatch<'_>> {
        let path = request.uri.path();
        self.index.candidates(path).iter().find_map(|&candidate| {
            let route = &self.routes[candidate];
            let params = route.matcher.matches(request, host, path)?;
            let upstream_path = route.rewrite.apply(path, &params).map(|mut rewritten| {
                if let Some(query) = request.uri.query() {
                    rewritten.push('?');
                    rewritten.push_str(query);
                }
                rewritten
            });
            Some(RouteMatch {
                route,
                upstream_path,
                variant: None,
                set_cookie: None,
            })
        })
    }

    pub(crate) fn upstreams(&self) -> &[UpstreamRef] {
        &self.upstreams
    }

    /// The route named `name`.
    pub(crate) fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| &*r.name == name)
    }
}

impl Target {
    /// The `upstream` label of the route's statistics: a composition has none of its own.
    pub(crate) fn stats_label(&self) -> &str {
        match self {
            Target::Upstream(upstream) => upstream.name(),
            Target::Compose(_) => "",
        }
    }
}

impl RouteTable {
    /// Drops from `registry` the routes and instances this table no longer has.
    pub(crate) fn retain_in(&self, registry: &crate::stats::Registry) {
        use crate::stats::Retained;
        let routes: Vec<(&str, &str)> = self
            .routes
            .iter()
            .flat_map(|r| {
                let variants = r.variants.iter().flat_map(|v| v.list.iter());
                std::iter::once((&*r.name, r.target.stats_label()))
                    .chain(variants.map(|v| (&*r.name, &**v.upstream.name())))
            })
            .collect();
        let current: Vec<_> = self.upstreams.iter().map(UpstreamRef::current).collect();
        let instances: Vec<(&str, &str)> = current
            .iter()
            .flat_map(|u| u.instances.iter().map(|i| (&*u.name, &*i.addr)))
            .collect();
        let sources: Vec<(&str, String)> = self
            .upstreams
            .iter()
            .filter_map(|u| u.discovery())
            .map(|d| (&*d.name, d.source_label()))
            .collect();
        let resolutions: Vec<(&str, &str)> = sources.iter().map(|(u, s)| (*u, s.as_str())).collect();
        registry.retain(Retained {
            routes: &routes,
            instances: &instances,
            resolutions: &resolutions,
        });
    }

    /// Stops the DNS resolutions of this table's discovered upstreams: a reload replaced it.
    pub(crate) fn retire(&self) {
        for discovery in self.upstreams.iter().filter_map(UpstreamRef::discovery) {
            discovery.retire();
        }
    }

    /// The discovered upstreams whose name has not been resolved once yet.
    pub(crate) fn unresolved(&self) -> Vec<&str> {
        let discovered = self.upstreams.iter().filter_map(UpstreamRef::discovery);
        discovered.filter(|d| !d.attempted()).map(|d| &*d.name).collect()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}
