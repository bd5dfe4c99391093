//! `lookout demo`: demo upstreams, the gateway routed to them and a traffic generator, all in
//! one process, so a newcomer sees real traffic at once.

mod history;
mod identity;
pub mod services;
mod traffic;

use crate::config::load_str;
use crate::server::{ConfigSource, Gateway, StartOptions};
use anyhow::Context;
use std::net::SocketAddr;
use tokio::sync::watch;

const LOOPBACK_ANY_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The demo's upstream addresses, bound on loopback ports chosen by the OS.
struct DemoUpstreams {
    books_v1: [SocketAddr; 2],
    /// Stands by for both: it serves only while neither is available.
    books_v1_backup: SocketAddr,
    books_v2: SocketAddr,
    /// Where the book list is mirrored: a copy of v2, to try it on real traffic unseen.
    books_shadow: SocketAddr,
    reviews: SocketAddr,
    inventory: SocketAddr,
    web: SocketAddr,
    /// The gRPC health service, reached over HTTP/2.
    status: SocketAddr,
    /// The demo identity provider's JWKS.
    idp: SocketAddr,
}

async fn start_upstreams() -> std::io::Result<DemoUpstreams> {
    Ok(DemoUpstreams {
        books_v1: [
            services::spawn(services::books("books-v1-a", 1), LOOPBACK_ANY_PORT).await?,
            services::spawn(services::books("books-v1-b", 1), LOOPBACK_ANY_PORT).await?,
        ],
        books_v1_backup: services::spawn(services::books("books-v1-backup", 1), LOOPBACK_ANY_PORT).await?,
        books_v2: services::spawn(services::books("books-v2", 2), LOOPBACK_ANY_PORT).await?,
        books_shadow: services::spawn(services::books("books-shadow", 2), LOOPBACK_ANY_PORT).await?,
        reviews: services::spawn(services::reviews(), LOOPBACK_ANY_PORT).await?,
        inventory: services::spawn(services::inventory(), LOOPBACK_ANY_PORT).await?,
        web: services::spawn(services::web(), LOOPBACK_ANY_PORT).await?,
        status: services::spawn(services::status(), LOOPBACK_ANY_PORT).await?,
        idp: services::spawn(identity::jwks_app(), LOOPBACK_ANY_PORT).await?,
    })
}

/// The API key of the demo's one consumer (`demo-partner`), printed at start.
pub(crate) const DEMO_API_KEY: &str = "lookout-demo-key";

/// The demo's config, in the same YAML a user would write; with traces to `otlp_endpoint` if any.
fn demo_config(
    up: &DemoUpstreams,
    proxy: SocketAddr,
    admin: SocketAddr,
    access_log: &str,
    otlp_endpoint: Option<&str>,
) -> String {
    let [a, b] = up.books_v1;
    let traces = otlp_endpoint.map_or(String::new(), |endpoint| {
        format!("traces: {}", crate::cli::traces_section(endpoint))
    });
    format!(
        r#"
listeners: {{ proxy: "{proxy}", admin: "{admin}" }}
{traces}
access_log: {{ path: "{access_log}" }}
analytics: {{ store: memory }}
security: {{ attack_filter: {{ mode: block }} }}
jwt_providers:
  - name: demo-idp
    algorithms: [ES256]
    jwks_url: "http://{idp}{jwks_path}"
    issuer: {issuer}
    audiences: [{audience}]
    forward_claims: {{ sub: x-user }}
consumers:
  - {{ name: demo-partner, groups: [partners], api_keys: ["{key}"] }}
upstreams:
  - name: books
    instances: [{{ address: "{a}", weight: 2 }}, "{b}"]
    backups: ["{backup}"]
    overprovisioning: 1.4
    health_check: {{ path: /healthz, interval: 2s }}
  - name: books-v2
    instances: ["{v2}"]
  - name: books-shadow
    instances: ["{shadow}"]
  - name: reviews
    instances: ["{reviews}"]
    balance: least_request
  - name: inventory
    instances: ["{inventory}"]
    retry: {{ attempts: 2, same_instance: true }}
    outlier: {{ consecutive_failures: 20 }}
  - name: web
    discover: {{ dns: "localhost:{web_port}" }}
  - name: status
    instances: ["{status}"]
    protocol: http2
    health_check: {{ grpc_service: "", interval: 2s }}
routes:
  - name: books-v2-beta
    match: {{ prefix: /books, headers: {{ x-books-version: "2" }} }}
    upstream: books-v2
  - name: books-list
    match: {{ path: /books, methods: [GET, POST] }}
    upstream: books
    mirror: {{ upstream: books-shadow, percent: 50 }}
    compress: {{ min_size: 512 }}
    slo: {{ objective: 99.9, latency: 100ms }}
  - name: search
    match: {{ path: /search, methods: [GET] }}
    upstream: books
    rate_limit: {{ rate: 1/s, burst: 3 }}
    transform:
      path: {{ pattern: "^/search$", replace: /books }}
      response_headers: {{ set: {{ x-served-by: "lookout ${{route}}" }} }}
  - name: book-full
    match: {{ template: "/books/{{id}}/full" }}
    timeout: 2s
    compose:
      on_error: partial
      calls:
        - {{ name: book, upstream: books, path: "/books/${{path.id}}", timeout: 1s }}
        - {{ name: reviews, upstream: reviews, path: "/reviews/${{book.id}}", timeout: 500ms }}
        - {{ name: stock, upstream: inventory, path: "/inventory/${{path.id}}", timeout: 300ms }}
  - name: book
    match: {{ template: "/books/{{id}}", methods: [GET] }}
    variants:
      - {{ name: v1, upstream: books, weight: 90 }}
      - {{ name: v2, upstream: books-v2, weight: 10 }}
    slo: {{ objective: 99, latency: 50ms }}
  - name: partner-books
    match: {{ prefix: /partner }}
    strip_prefix: /partner
    upstream: books
    auth: {{ groups: [partners] }}
    rate_limit: {{ rate: 10/s, burst: 20, key: consumer }}
  - name: my-books
    match: {{ prefix: /me, methods: [GET] }}
    strip_prefix: /me
    upstream: books
    auth: {{ jwt: demo-idp, scopes: ["books:read"] }}
    security:
      cors: {{ origins: ["http://localhost:3000"], headers: [authorization] }}
  - name: api-books
    match: {{ prefix: /api }}
    strip_prefix: /api
    upstream: books
  - name: reviews
    match: {{ template: "/reviews/{{id}}" }}
    upstream: reviews
    timeout: 2s
    cache: {{ ttl: 10s }}
    slo: {{ objective: 97, latency: 200ms }}
  - name: inventory
    match: {{ prefix: /inventory }}
    upstream: inventory
    per_try_timeout: 400ms
    slo: {{ objective: 99 }}
  - name: web
    match: {{ prefix: /app }}
    upstream: web
    compress: {{ min_size: 512 }}
  - name: grpc-health
    match: {{ prefix: /grpc.health.v1.Health, methods: [POST] }}
    upstream: status
"#,
        backup = up.books_v1_backup,
        v2 = up.books_v2,
        shadow = up.books_shadow,
        reviews = up.reviews,
        inventory = up.inventory,
        web_port = up.web.port(),
        status = up.status,
        idp = up.idp,
        jwks_path = identity::JWKS_PATH,
        issuer = identity::ISSUER,
        audience = identity::AUDIENCE,
        key = crate::auth::KeyHash::of(DEMO_API_KEY.as_bytes()),
    )
}

/// Runs the demo until SIGTERM or Ctrl-C.
pub async fn run(rps: u32, proxy: Option<SocketAddr>, admin: Option<SocketAddr>) -> anyhow::Result<()> {
    let upstreams = start_upstreams().await.context("starting the demo upstreams")?;
    let defaults = crate::config::Listeners::default();
    let access_log = std::env::temp_dir().join("lookout-demo-access.jsonl");
    // Each demo starts a new log: every run also writes its hour of made-up history there
    // (about 66 MB), and appended to by run after run it grew to 6.4 GB and filled the disk.
    match std::fs::remove_file(&access_log) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(%error, path = %access_log.display(), "cannot remove the last demo's access log");
        }
        _ => {}
    }
    let otlp_endpoint = crate::cli::otlp_endpoint_from_env();
    let text = demo_config(
        &upstreams,
        proxy.unwrap_or(defaults.proxy),
        admin.unwrap_or(defaults.admin),
        &access_log.display().to_string(),
        otlp_endpoint.as_deref(),
    );
    let config = load_str("<demo>", &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let objectives = history::Objectives::of(&config.routes);
    let source = ConfigSource::Inline {
        name: "<demo>".into(),
        text,
    };
    let gateway = Gateway::start(config, source, StartOptions::default()).await?;
    let (stop, stopped) = watch::channel(false);
    if rps > 0 {
        tokio::spawn(traffic::generate(gateway.proxy_addr(), rps, stopped));
    }
    print_welcome(&gateway, rps, &access_log, otlp_endpoint.as_deref());
    // Seeding takes seconds; a signal meanwhile stops the demo as it would later.
    tokio::select! {
        seeded = history::seed(gateway.event_queue(), rps, &objectives) => {
            tracing::info!(events = seeded, "the demo store holds an hour of made-up history");
            crate::cli::wait_for_shutdown_signal().await;
        }
        () = crate::cli::wait_for_shutdown_signal() => {}
    }
    let _ = stop.send(true);
    gateway.shutdown().await;
    Ok(())
}

fn print_welcome(gateway: &Gateway, rps: u32, access_log: &std::path::Path, traces_to: Option<&str>) {
    let proxy = gateway.proxy_addr();
    let admin = gateway.admin_addr();
    println!(
        "\nLookout demo is running ({rps} requests/s of generated traffic).\n\n\
         Proxy:      http://{proxy}\n\
         \x20 curl http://{proxy}/books\n\
         \x20 curl http://{proxy}/books/3\n\
         \x20 curl -H 'x-books-version: 2' http://{proxy}/books/3\n\
         \x20 curl -i http://{proxy}/reviews/3     (cached for 10 s: x-cache HIT or MISS)\n\
         \x20 curl -i http://{proxy}/search?q=dune (limited to 1/s, burst 3: RateLimit headers, then 429)\n\
         \x20 curl -H 'x-api-key: {DEMO_API_KEY}' http://{proxy}/partner/books/3   (needs the API key: 401 without)\n\
         \x20 curl -H \"authorization: Bearer $TOKEN\" http://{proxy}/me/books/3   (needs the JWT below: 401 without)\n\
         \x20 curl -i \"http://{proxy}/books?q=1'%20OR%20'1'='1\"   (the attack filter: 403)\n\
         \x20 curl http://{proxy}/books/3/full    (a book, its reviews and its stock: three calls, one JSON)\n\
         \x20 curl http://{proxy}/inventory/3     (fails now and then; retried)\n\
         \x20 grpc_health_probe -addr={proxy} -service=inventory   (gRPC to an HTTP/2 upstream; flips every 30 s)\n\
         Web app:    http://{proxy}/app/   (a static front end calling the API through the gateway)\n\
         Dashboard:  http://{admin}/dashboard   (with an hour of made-up history: anomalies, a canary)\n\
         Admin:      http://{admin}/admin/stats   http://{admin}/metrics   http://{admin}/healthz\n\
         SQL:        curl -H 'content-type: text/plain' -d 'SELECT route, count(*) FROM requests GROUP BY ALL' http://{admin}/api/sql\n\
         \x20           curl http://{admin}/api/queries/route_latency_per_minute\n\
         Access log: {}   (one JSON event per request)\n\
         Traces:     {traces}\n\n\
         Token:      TOKEN={token}\n\
         \x20           (ES256, from the demo identity provider's JWKS; scope books:read; valid 24 h)\n\n\
         Press Ctrl-C to stop.",
        access_log.display(),
        traces = traces_to.map_or_else(
            || "off (set OTEL_EXPORTER_OTLP_ENDPOINT to send every request's spans over OTLP/gRPC)".into(),
            |endpoint| format!("every request's spans to {endpoint} (OTLP/gRPC; x-trace-id in answers)"),
        ),
        token = identity::token(std::time::Duration::from_secs(24 * 3600), false),
    );
}
