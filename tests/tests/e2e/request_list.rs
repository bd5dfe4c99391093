//! The dashboard's list of requests over a real store: latest first, each filter keeps what it
//! says, the link to older requests pages through all of them once, and a bad search is refused
//! with every problem named. The route pages count the same requests, and a request's own page
//! shows what the store knows of it.

use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_body, start_gateway, wait_for_stored, Reply, TestUpstream};
use std::net::SocketAddr;

const TOKEN: &str = "list-token";

async fn page(admin: SocketAddr, address: &str) -> Reply {
    let bearer = format!("Bearer {TOKEN}");
    send(admin, Method::GET, address, &[("authorization", &bearer)]).await
}

fn html(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The request ids a list shows, in order (each link's title holds its whole id).
fn listed(html: &str) -> Vec<String> {
    html.split("href=\"/dashboard/requests/")
        .skip(1)
        .filter_map(|link| {
            let title = link.split_once("title=\"")?.1;
            Some(title.split_once('"')?.0.to_owned())
        })
        .collect()
}

/// The address of the link to older requests, when the page has one.
fn older(html: &str) -> Option<String> {
    let link = html.split_once("id=\"older\" href=\"")?.1;
    Some(link.split_once('"')?.0.replace("&#38;", "&"))
}

/// Every id of a search, page after page.
async fn every_page(admin: SocketAddr, first: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next = Some(first.to_owned());
    while let Some(address) = next {
        let reply = page(admin, &address).await;
        assert_eq!(reply.status, StatusCode::OK, "{address}: {}", html(&reply));
        let body = html(&reply);
        ids.extend(listed(&body));
        next = older(&body);
        assert!(ids.len() <= 200, "pages without end");
    }
    ids
}

/// The rows of a query through the SQL endpoint.
async fn sql(admin: SocketAddr, query: &str) -> serde_json::Value {
    let bearer = format!("Bearer {TOKEN}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "text/plain")];
    let reply = send_body(admin, Method::POST, "/api/sql", &headers, query.to_owned()).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", html(&reply));
    body_json(&reply)["rows"].clone()
}

fn named(prefix: &str, ns: impl DoubleEndedIterator<Item = usize>) -> Vec<String> {
    ns.rev().map(|n| format!("{prefix}-{n:02}")).collect()
}

async fn gateway(upstream: SocketAddr) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: files, match: {{ prefix: /download }}, upstream: svc }}\n  \
         - {{ name: echo, match: {{ prefix: /echo }}, upstream: svc }}\n"
    ))
    .await
}

#[tokio::test]
async fn the_list_of_requests_filters_and_pages_through_the_store() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(upstream.addr).await;
    let proxy = gateway.proxy_addr();
    // One after another, so that their order in time is the order sent.
    for i in 0..60 {
        let id = format!("list-{i:02}");
        send(
            proxy,
            Method::GET,
            &format!("/echo/{i}"),
            &[("x-request-id", &id)],
        )
        .await;
    }
    upstream.fail_with(503);
    for i in 0..5 {
        let id = format!("fail-{i:02}");
        send(proxy, Method::GET, "/download/x", &[("x-request-id", &id)]).await;
    }
    for i in 0..3 {
        let id = format!("lost-{i:02}");
        send(proxy, Method::GET, "/nowhere", &[("x-request-id", &id)]).await;
    }
    wait_for_stored(&gateway, 68).await;
    let admin = gateway.admin_addr();

    let first = html(&page(admin, "/dashboard/requests").await);
    assert_eq!(listed(&first).len(), 50, "a page");
    let mut everything = named("lost", 0..3);
    everything.extend(named("fail", 0..5));
    everything.extend(named("list", 0..60));
    assert_eq!(every_page(admin, "/dashboard/requests").await, everything);

    assert_eq!(
        every_page(admin, "/dashboard/requests?status=5xx").await,
        named("fail", 0..5)
    );
    assert_eq!(
        every_page(admin, "/dashboard/requests?status=failed&route=files").await,
        named("fail", 0..5)
    );
    assert_eq!(
        every_page(admin, "/dashboard/requests?route=unmatched").await,
        named("lost", 0..3)
    );
    let mut failed = named("lost", 0..3);
    failed.extend(named("fail", 0..5));
    assert_eq!(
        every_page(admin, "/dashboard/requests?status=failed").await,
        failed,
        "the 503s and the gateway's 404s"
    );
    assert_eq!(
        every_page(admin, "/dashboard/requests?status=server_error").await,
        named("fail", 0..5),
        "the 503s only"
    );
    let mut ones = named("list", 10..20);
    ones.push("list-01".into());
    assert_eq!(
        every_page(admin, "/dashboard/requests?route=echo&path=%2Fecho%2F1").await,
        ones
    );
    let none = html(&page(admin, "/dashboard/requests?slower_than=1h").await);
    assert!(listed(&none).is_empty() && none.contains("id=\"end\""), "{none}");

    // The route pages count the requests just sent, whose minute is not rolled up yet, and the
    // unmatched requests' page reads them under that name.
    // Listed: the 20 slowest, then the failed (a 5xx, or the gateway's error such as no_route).
    let pages = [
        ("echo", 60, "0.00%", 20),
        ("files", 5, "100.00%", 5 + 5),
        ("unmatched", 3, "0.00%", 3 + 3),
    ];
    for (route, requests, errors, rows) in pages {
        let body = html(&page(admin, &format!("/dashboard/routes/{route}")).await);
        assert!(
            body.contains(&format!("id=\"route-requests\">{requests}<")),
            "{route}: {body}"
        );
        assert!(
            body.contains(&format!("id=\"route-errors\">{errors}<")),
            "{route}: {body}"
        );
        assert_eq!(listed(&body).len(), rows, "{route}: slowest and failed");
        // A dash until a minute of the route is rolled up (a minute may have closed since the
        // first request): never a p99 of 0.
        assert!(!body.contains("id=\"route-worst-p99\">0 µs<"), "{route}: {body}");
    }

    // A window of time, in milliseconds as Grafana's links give it: the requests that SQL
    // finds in it.
    let millis = |id: &'static str| async move {
        let found = sql(
            admin,
            &format!("SELECT epoch_ms(ts) FROM requests WHERE request_id = '{id}'"),
        )
        .await;
        found[0][0].as_i64().expect("a time")
    };
    let (since, until) = (millis("list-10").await, millis("list-30").await);
    let window = sql(
        admin,
        &format!(
            "SELECT request_id FROM requests WHERE route = 'echo'
             AND epoch_ms(ts) BETWEEN {since} AND {until} ORDER BY ts DESC"
        ),
    )
    .await;
    let expected: Vec<String> = window
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0].as_str().expect("an id").to_owned())
        .collect();
    assert!(expected.len() >= 21, "{expected:?}");
    assert_eq!(
        every_page(
            admin,
            &format!("/dashboard/requests?route=echo&since={since}&until={until}")
        )
        .await,
        expected
    );

    // The overview's live part lists the latest failed requests: the 503s, and the unmatched.
    let live = html(&page(admin, "/dashboard/live").await);
    let mut latest_failed = named("lost", 0..3);
    latest_failed.extend(named("fail", 0..5));
    assert_eq!(listed(&live), latest_failed);

    // A request's page leads to the requests of its client.
    let request = html(&page(admin, "/dashboard/requests/list-05").await);
    let client = request
        .split_once("href=\"/dashboard/requests?client=")
        .and_then(|(_, link)| link.split_once('"'))
        .map(|(client, _)| format!("/dashboard/requests?client={client}"))
        .expect("a link to the client's requests");
    assert_eq!(every_page(admin, &client).await, everything);
    let nobody = html(&page(admin, "/dashboard/requests?client=10.9.9.9").await);
    assert!(listed(&nobody).is_empty(), "{nobody}");

    let refused = page(
        admin,
        "/dashboard/requests?status=6xx&slower_than=soon&after=x&client=10.0.0&since=noon",
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let refused = html(&refused);
    for field in ["status: ", "slower_than: ", "client: ", "since: ", "after: "] {
        assert!(refused.contains(field), "{field} in {refused}");
    }
    assert!(
        refused.contains("value=\"soon\""),
        "the form keeps what was typed"
    );
    gateway.shutdown().await;
}

/// A request page's details: each row's name and its text, tags and entities left out.
fn details(html: &str) -> Vec<(String, String)> {
    let table = html.split_once("id=\"request-fields\"").expect("details").1;
    let table = table.split_once("</table>").expect("the table's end").0;
    table
        .split("<tr><th>")
        .skip(1)
        .map(|row| {
            let (name, rest) = row.split_once("</th>").expect("a name");
            let cell = rest.split_once("</td>").expect("a value").0;
            let text: String = cell
                .split('<')
                .map(|part| part.split_once('>').map_or(part, |(_, text)| text))
                .collect();
            (name.to_owned(), text.replace("&#39;", "'").replace("&#34;", "\""))
        })
        .collect()
}

async fn detail(admin: SocketAddr, id: &str, name: &str) -> String {
    let reply = page(admin, &format!("/dashboard/requests/{id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{id}: {}", html(&reply));
    let rows = details(&html(&reply));
    let found = rows.iter().find(|(n, _)| n == name);
    found
        .unwrap_or_else(|| panic!("{id}: no {name} in {rows:?}"))
        .1
        .clone()
}

#[tokio::test]
async fn a_request_page_shows_what_the_store_knows_of_it() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - {{ name: cached, match: {{ prefix: /cached }}, upstream: svc, cache: {{ ttl: 60s }} }}\n  \
         - {{ name: copied, match: {{ prefix: /copied }}, upstream: svc, mirror: {{ upstream: svc, percent: 100 }} }}\n  \
         - {{ name: guarded, match: {{ prefix: /guarded }}, upstream: svc, security: {{ attack_filter: {{ mode: block }} }} }}\n  \
         - {{ name: echo, upstream: svc }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let sent = [
        ("opened", "/echo/1", StatusCode::OK),
        ("reused", "/echo/2", StatusCode::OK),
        ("miss", "/cached/1", StatusCode::OK),
        ("hit", "/cached/1", StatusCode::OK),
        ("attack", "/guarded?q=1'%20OR%20'1'='1", StatusCode::FORBIDDEN),
        ("copied", "/copied/1", StatusCode::OK),
    ];
    for (id, path, status) in sent {
        let headers = [("x-request-id", id), ("host", "shop.example")];
        assert_eq!(
            send(proxy, Method::GET, path, &headers).await.status,
            status,
            "{id}"
        );
    }
    // The mirror's copy is an event of its own.
    wait_for_stored(&gateway, sent.len() + 1).await;
    let admin = gateway.admin_addr();

    assert_eq!(detail(admin, "opened", "host").await, "shop.example");
    assert_eq!(detail(admin, "opened", "protocol").await, "HTTP/1.1");
    assert_eq!(detail(admin, "opened", "upstream").await, "svc");
    let connect = detail(admin, "opened", "upstream connect").await;
    assert!(connect.ends_with("µs") || connect.ends_with("ms"), "{connect}");
    assert_eq!(
        detail(admin, "reused", "upstream connect").await,
        "none: a connection already open"
    );
    // The waterfall says when an attempt opened its connection, and for how long.
    for (id, opened) in [("opened", true), ("reused", false)] {
        let waterfall = html(&page(admin, &format!("/dashboard/requests/{id}")).await);
        assert_eq!(waterfall.contains(" connecting"), opened, "{id}: {waterfall}");
        assert_eq!(
            waterfall.contains("class=\"lead\""),
            opened,
            "{id}: the bar's shaded start"
        );
    }
    let connects = sql(
        admin,
        "SELECT r.request_id, s.connect_us > 0 FROM request_spans AS s JOIN requests AS r USING (request_key)
         WHERE s.kind = 'upstream_attempt' AND r.request_id IN ('opened', 'reused') ORDER BY 1",
    )
    .await;
    assert_eq!(connects, serde_json::json!([["opened", true], ["reused", false]]));
    let first_byte = detail(admin, "reused", "upstream first byte").await;
    assert!(
        first_byte.ends_with("µs") || first_byte.ends_with("ms"),
        "{first_byte}"
    );
    assert_eq!(detail(admin, "miss", "cache").await, "MISS");
    assert_eq!(detail(admin, "hit", "cache").await, "HIT");
    assert_eq!(
        detail(admin, "hit", "upstream connect").await,
        "–",
        "nothing sent upstream"
    );
    assert_eq!(detail(admin, "reused", "refused by").await, "–");
    assert_eq!(
        detail(admin, "attack", "refused by").await,
        "attack_filter: the request was refused by the attack filter: SQL injection in the query"
    );
    assert_eq!(detail(admin, "attack", "threat").await, "sqli in query");
    assert_eq!(
        detail(admin, "attack", "upstream first byte").await,
        "–",
        "refused before it was sent"
    );
    assert_eq!(detail(admin, "attack", "upstream").await, "svc (not asked)");
    assert_eq!(detail(admin, "hit", "upstream").await, "svc (not asked)");
    assert_eq!(
        detail(admin, "copied-mirror", "mirrored").await,
        "a copy sent to the route's mirror"
    );
    gateway.shutdown().await;
}
