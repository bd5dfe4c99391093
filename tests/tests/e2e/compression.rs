//! Response compression: a route with `compress:` sends text-like responses in the coding the
//! client takes best (zstd, br, then gzip), decodable by curl and by the codings' own decoders;
//! responses not worth it pass as they are; the cache keeps the uncompressed answer and serves
//! each client its own coding; and Prometheus counts what compression saved.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
use bytes::Bytes;
use http::{Method, StatusCode};
use lookout_tests::tls::curl;
use lookout_tests::{metrics_text, raw_server, send, start_gateway, Reply, TestUpstream};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BODY: usize = 200_000;

fn config(upstream: SocketAddr, route_extra: &str) -> String {
    format!(
        "cache: {{ max_size: 16MiB }}\n\
         upstreams:\n  - {{ name: web, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: site, upstream: web, compress: {{}}{route_extra} }}\n"
    )
}

/// `GET /download/200000` as `content_type`, with `accept_encoding` when given.
async fn fetch(
    proxy: SocketAddr,
    content_type: &str,
    accept_encoding: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let reply_type = format!("content-type: {content_type}");
    let mut headers = vec![("x-reply-header", reply_type.as_str())];
    headers.extend(accept_encoding.map(|coding| ("accept-encoding", coding)));
    headers.extend_from_slice(extra);
    send(proxy, Method::GET, &format!("/download/{BODY}"), &headers).await
}

async fn decoded(coding: &str, body: &Bytes) -> Vec<u8> {
    let mut plain = Vec::new();
    let read = match coding {
        "gzip" => GzipDecoder::new(&body[..]).read_to_end(&mut plain).await,
        "br" => BrotliDecoder::new(&body[..]).read_to_end(&mut plain).await,
        "zstd" => ZstdDecoder::new(&body[..]).read_to_end(&mut plain).await,
        other => panic!("no coding {other}"),
    };
    read.expect("the body decodes");
    plain
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn a_text_response_comes_in_the_coding_the_client_takes_best() {
    let upstream = TestUpstream::start("web").await;
    let gateway = start_gateway(&config(upstream.addr, "")).await;
    let proxy = gateway.proxy_addr();
    let etag = ("x-reply-header", "etag: \"v1\"");
    for (accepts, coding) in [
        ("gzip, deflate", "gzip"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
        ("gzip, deflate, br, zstd", "zstd"),
    ] {
        let reply = fetch(proxy, "text/plain; charset=utf-8", Some(accepts), &[etag]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, "content-encoding"), Some(coding), "{accepts}");
        assert_eq!(header(&reply, "content-length"), None);
        assert_eq!(header(&reply, "vary"), Some("accept-encoding"));
        assert_eq!(
            header(&reply, "etag"),
            Some("W/\"v1\""),
            "the bytes differ, the meaning not"
        );
        assert!(
            reply.body.len() * 50 < BODY,
            "{coding}: {} bytes",
            reply.body.len()
        );
        assert_eq!(decoded(coding, &reply.body).await, vec![b'x'; BODY], "{coding}");
    }
    // A client that takes neither gets it as it is, told that others may not.
    let plain = fetch(proxy, "text/plain", None, &[etag]).await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(plain.body.len(), BODY);
    assert_eq!(header(&plain, "vary"), Some("accept-encoding"));
    assert_eq!(header(&plain, "etag"), Some("\"v1\""));

    // An independent client decodes both.
    let url = format!("http://{proxy}/download/{BODY}");
    for coding in ["zstd", "br", "gzip"] {
        let accept = format!("accept-encoding: {coding}");
        let Some(run) = curl(&[
            "--compressed",
            "-H",
            &accept,
            "-H",
            "x-reply-header: content-type: text/html",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_code}",
            &url,
        ])
        .await
        else {
            return;
        };
        assert_eq!(run.exit_code, 0, "{}", run.stderr);
        let (downloaded, status) = run.stdout.split_once(' ').expect("two figures");
        assert_eq!(status, "200");
        let downloaded: usize = downloaded.parse().expect("a size");
        assert!(
            downloaded * 50 < BODY,
            "{coding}: curl downloaded {downloaded} bytes"
        );
    }

    let metrics = metrics_text(gateway.admin_addr()).await;
    let figure = |series: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("{series}"));
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a count")
    };
    assert_eq!(
        figure(r#"lookout_responses_compressed_total{http_route="site",encoding="gzip"}"#),
        3
    );
    assert_eq!(
        figure(r#"lookout_responses_compressed_total{http_route="site",encoding="br"}"#),
        2
    );
    assert_eq!(
        figure(r#"lookout_responses_compressed_total{http_route="site",encoding="zstd"}"#),
        2
    );
    let into = figure(r#"lookout_compression_bytes_total{http_route="site",stage="in"}"#);
    let out = figure(r#"lookout_compression_bytes_total{http_route="site",stage="out"}"#);
    assert_eq!(into, 7 * BODY as u64);
    assert!(out * 50 < into, "{out} of {into}");
}

#[tokio::test]
async fn responses_not_worth_compressing_pass_as_they_are() {
    let upstream = TestUpstream::start("web").await;
    let gateway = start_gateway(&config(upstream.addr, "")).await;
    let proxy = gateway.proxy_addr();
    let gzip = Some("gzip, br");
    let cases: [(&str, Reply); 4] = [
        ("an image", fetch(proxy, "image/png", gzip, &[]).await),
        (
            "an event stream",
            fetch(proxy, "text/event-stream", gzip, &[]).await,
        ),
        (
            "no-transform",
            fetch(
                proxy,
                "text/html",
                gzip,
                &[("x-reply-header", "cache-control: no-transform")],
            )
            .await,
        ),
        (
            "already encoded",
            fetch(
                proxy,
                "text/html",
                gzip,
                &[("x-reply-header", "content-encoding: zstd")],
            )
            .await,
        ),
    ];
    for (what, reply) in cases {
        assert_eq!(reply.status, StatusCode::OK, "{what}");
        assert_ne!(header(&reply, "content-encoding"), Some("gzip"), "{what}");
        assert_ne!(header(&reply, "content-encoding"), Some("br"), "{what}");
    }
    // A HEAD gets the headers the GET's answer would have, and no body.
    let head = |encoding: &'static str| {
        let headers = [
            ("accept-encoding", encoding),
            ("x-reply-header", "content-type: text/html"),
            ("x-reply-header", "content-length: 5000"),
        ];
        async move { send(proxy, Method::HEAD, "/download/5000", &headers).await }
    };
    let reply = head("gzip").await;
    assert_eq!(
        header(&reply, "content-encoding"),
        Some("gzip"),
        "{:?}",
        reply.headers
    );
    assert_eq!(header(&reply, "content-length"), None, "{:?}", reply.headers);
    assert_eq!(header(&reply, "vary"), Some("accept-encoding"));
    assert!(reply.body.is_empty());
    let plain = head("identity").await;
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(
        header(&plain, "content-length"),
        Some("5000"),
        "{:?}",
        plain.headers
    );
    // Shorter than `min_size` (1 KiB): the echo's JSON.
    let small = send(proxy, Method::GET, "/small", &[("accept-encoding", "gzip")]).await;
    assert_eq!(header(&small, "content-type"), Some("application/json"));
    assert_eq!(header(&small, "content-encoding"), None);
    assert!(small.body.len() < 1024);
}

/// The cache stores the upstream's answer as it came; each client gets it in its own coding,
/// the hits too.
#[tokio::test]
async fn the_cache_serves_each_client_its_own_coding() {
    let upstream = TestUpstream::start("web").await;
    let gateway = start_gateway(&config(upstream.addr, ", cache: { ttl: 60s }")).await;
    let proxy = gateway.proxy_addr();
    let first = fetch(proxy, "text/css", Some("gzip"), &[]).await;
    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    assert_eq!(header(&first, "content-encoding"), Some("gzip"));
    assert_eq!(decoded("gzip", &first.body).await.len(), BODY);
    let plain = fetch(proxy, "text/css", None, &[]).await;
    assert_eq!(header(&plain, "x-cache"), Some("HIT"));
    assert_eq!(header(&plain, "content-encoding"), None);
    assert_eq!(plain.body.len(), BODY);
    let brotli = fetch(proxy, "text/css", Some("br"), &[]).await;
    assert_eq!(header(&brotli, "x-cache"), Some("HIT"));
    assert_eq!(header(&brotli, "content-encoding"), Some("br"));
    assert_eq!(decoded("br", &brotli.body).await.len(), BODY);
    assert_eq!(upstream.hits(), 1);
}

/// A text answer whose first part comes at once and whose end, for the first connection, comes
/// a second later; the others come whole.
async fn slow_to_end() -> SocketAddr {
    let (addr, _) = raw_server(|connection, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_none() {
            return;
        }
        let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
        let chunk = format!("800\r\n{}\r\n", "a".repeat(0x800));
        if stream.write_all(format!("{head}{chunk}").as_bytes()).await.is_err() {
            return;
        }
        if connection == 0 {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        let _ = stream.write_all(format!("{chunk}0\r\n\r\n").as_bytes()).await;
    })
    .await;
    addr
}

/// Starts `GET /first` with gzip and reads its head: while its body is slow to end, the
/// response holds its `max_in_flight` slot.
async fn compressing_first(proxy: SocketAddr) -> TcpStream {
    let mut first = TcpStream::connect(proxy).await.expect("connect");
    let request = "GET /first HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nconnection: close\r\n\r\n";
    first.write_all(request.as_bytes()).await.expect("write");
    let head = lookout_tests::read_request_head(&mut first)
        .await
        .expect("a head");
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    first
}

/// While `/first` is compressed, `/second` (on route `site`) goes as it is, counted, and
/// `/own` (when given: a route with its own bound) is compressed; once `/first` ends, `/third`
/// is compressed again.
async fn one_compressed_at_a_time(proxy: SocketAddr, admin: SocketAddr, own: Option<&str>) {
    let gzip = [("accept-encoding", "gzip")];
    let mut first = compressing_first(proxy).await;
    let second = send(proxy, Method::GET, "/second", &gzip).await;
    assert_eq!(header(&second, "content-encoding"), None, "one at a time");
    assert_eq!(second.body.len(), 0x1000);
    assert_eq!(header(&second, "vary"), Some("accept-encoding"));
    let at_limit = r#"lookout_compression_at_limit_total{http_route="site"} 1"#;
    assert!(metrics_text(admin).await.contains(at_limit), "{at_limit}");
    if let Some(own) = own {
        let reply = send(proxy, Method::GET, own, &gzip).await;
        assert_eq!(header(&reply, "content-encoding"), Some("gzip"), "its own bound");
    }

    let mut rest = Vec::new();
    first.read_to_end(&mut rest).await.expect("the first ends");
    let third = send(proxy, Method::GET, "/third", &gzip).await;
    assert_eq!(
        header(&third, "content-encoding"),
        Some("gzip"),
        "its slot came back"
    );
    assert_eq!(decoded("gzip", &third.body).await.len(), 0x1000);
}

/// `max_in_flight` bounds the responses compressed at once (each holds its encoder until it
/// ends): past it a response goes as it is, counted, and a slot comes back when one ends.
#[tokio::test]
async fn past_max_in_flight_a_response_goes_as_it_is() {
    let upstream = slow_to_end().await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: web, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: site, upstream: web, compress: {{ max_in_flight: 1 }} }}\n"
    ))
    .await;
    one_compressed_at_a_time(gateway.proxy_addr(), gateway.admin_addr(), None).await;
}

/// The top level's `max_in_flight` bounds together the routes that take it (`first`, `site`);
/// a route with its own counts its own.
#[tokio::test]
async fn the_top_level_max_in_flight_bounds_its_routes_together() {
    let upstream = slow_to_end().await;
    let gateway = start_gateway(&format!(
        "compress: {{ max_in_flight: 1 }}\n\
         upstreams:\n  - {{ name: web, instances: [\"{upstream}\"] }}\n\
         routes:\n\
         \x20 - {{ name: first, match: {{ prefix: /first }}, upstream: web }}\n\
         \x20 - {{ name: own, match: {{ prefix: /own }}, upstream: web, compress: {{ max_in_flight: 4 }} }}\n\
         \x20 - {{ name: site, upstream: web }}\n"
    ))
    .await;
    one_compressed_at_a_time(gateway.proxy_addr(), gateway.admin_addr(), Some("/own")).await;
}

/// The top-level `compress:` is every route's, field by field under a route's own, and a
/// route opts out with `enabled: false`.
#[tokio::test]
async fn the_top_level_compress_is_every_routes_unless_it_sets_its_own() {
    let upstream = TestUpstream::start("web").await;
    let gateway = start_gateway(&format!(
        "compress: {{ min_size: 100KiB, types: [text/css] }}\n\
         upstreams:\n  - {{ name: web, instances: [\"{}\"] }}\n\
         routes:\n\
         \x20 - {{ name: off, match: {{ prefix: /off }}, strip_prefix: /off, upstream: web, compress: {{ enabled: false }} }}\n\
         \x20 - {{ name: larger, match: {{ prefix: /larger }}, strip_prefix: /larger, upstream: web, compress: {{ min_size: 300KiB }} }}\n\
         \x20 - {{ name: site, upstream: web }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    // A download of `size` bytes of `content_type`, its length declared.
    let get = |prefix: &'static str, size: usize, content_type: &'static str| async move {
        let (reply_type, length) = (
            format!("content-type: {content_type}"),
            format!("content-length: {size}"),
        );
        let headers = [
            ("x-reply-header", reply_type.as_str()),
            ("x-reply-header", length.as_str()),
            ("accept-encoding", "gzip"),
        ];
        send(proxy, Method::GET, &format!("{prefix}/download/{size}"), &headers).await
    };
    let coding = |reply: &Reply| header(reply, "content-encoding").map(str::to_owned);
    let gzip = Some("gzip".to_owned());
    // Over the top-level min_size, of its types.
    assert_eq!(coding(&get("", 200_000, "text/css").await), gzip);
    let html = get("", 200_000, "text/html").await;
    assert_eq!(coding(&html), None, "not of the top-level types");
    assert_eq!(
        coding(&get("", 50_000, "text/css").await),
        None,
        "under the top-level min_size"
    );
    let off = get("/off", 200_000, "text/css").await;
    assert_eq!(coding(&off), None, "enabled: false");
    assert_eq!(
        header(&off, "vary"),
        None,
        "a route that never compresses does not vary"
    );
    // Its own min_size over the top level's; the top level's types still.
    let larger = get("/larger", 200_000, "text/css").await;
    assert_eq!(coding(&larger), None, "under the route's own min_size");
    assert_eq!(coding(&get("/larger", 400_000, "text/css").await), gzip);
    let larger_html = get("/larger", 400_000, "text/html").await;
    assert_eq!(coding(&larger_html), None, "the top level's types");
    gateway.shutdown().await;
}

/// `levels:` reach the encoders, the top level's under a route's own, level by level.
#[tokio::test]
async fn levels_are_the_routes_over_the_top_levels() {
    let upstream = TestUpstream::start("web").await;
    let gateway = start_gateway(&format!(
        "compress: {{ levels: {{ gzip: 9, br: 11 }} }}\n\
         upstreams:\n  - {{ name: web, instances: [\"{}\"] }}\n\
         routes:\n\
         \x20 - {{ name: fast, match: {{ prefix: /fast }}, strip_prefix: /fast, upstream: web, compress: {{ levels: {{ gzip: 1 }} }} }}\n\
         \x20 - {{ name: defaults, match: {{ prefix: /defaults }}, strip_prefix: /defaults, upstream: web, compress: {{ levels: {{ gzip: 6, br: 4 }} }} }}\n\
         \x20 - {{ name: site, upstream: web }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    // One upstream frame (under 64 KiB): the encoder's output then does not depend on how the
    // body's chunks happened to arrive.
    const ONE_FRAME: usize = 60_000;
    let sent = |path: &'static str, coding: &'static str| async move {
        let reply = fetch_path(proxy, path, coding, ONE_FRAME).await;
        assert_eq!(header(&reply, "content-encoding"), Some(coding), "{path}");
        assert_eq!(decoded(coding, &reply.body).await.len(), ONE_FRAME, "{path}");
        reply.body.len()
    };
    let (best, fast) = (sent("", "gzip").await, sent("/fast", "gzip").await);
    assert!(best < fast, "gzip 9 sent {best} bytes, gzip 1 {fast}");
    // br: the top level's 11 on both routes.
    assert_eq!(sent("", "br").await, sent("/fast", "br").await);
    // The top level's levels reach a route that sets none: against the built-in levels set
    // explicitly, gzip 9 sends fewer bytes, brotli 11 others (more, on this body).
    let (top, defaults) = (sent("", "gzip").await, sent("/defaults", "gzip").await);
    assert!(top < defaults, "gzip 9 sent {top} bytes, gzip 6 {defaults}");
    assert_ne!(sent("", "br").await, sent("/defaults", "br").await);
}

/// `GET {prefix}/download/{size}` as text/html, asking for `coding` alone.
async fn fetch_path(proxy: SocketAddr, prefix: &str, coding: &str, size: usize) -> Reply {
    let headers = [
        ("x-reply-header", "content-type: text/html"),
        ("accept-encoding", coding),
    ];
    send(proxy, Method::GET, &format!("{prefix}/download/{size}"), &headers).await
}
