//! The dashboard's callers over a real store: consumers and client addresses counted from the
//! requests sent, ranked each way, each leading to exactly its requests in the list; a window
//! or ranking the page does not offer is refused with its field named.

use http::{Method, StatusCode};
use lookout_tests::{send, send_from, start_gateway, wait_for_stored, Reply, TestUpstream};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

const TOKEN: &str = "callers-token";
use lookout_tests::keys::{ACME_DIGEST as ACME, GLOBEX_DIGEST as GLOBEX};
const SECOND_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn page(admin: SocketAddr, address: &str) -> Reply {
    let bearer = format!("Bearer {TOKEN}");
    send(admin, Method::GET, address, &[("authorization", &bearer)]).await
}

fn html(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// A table's rows, each as its cells' text (tags taken out).
fn rows(html: &str, table: &str) -> Vec<Vec<String>> {
    let start = html.find(&format!("<table id=\"{table}\">")).expect("the table");
    let end = start + html[start..].find("</table>").expect("its end");
    html[start..end]
        .split("<tr>")
        .skip(2)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| text(cell.split_once('>').map_or("", |(_, rest)| rest)))
                .collect()
        })
        .collect()
}

fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

/// The address of the first link of `class` in the row of `caller`.
fn link(html: &str, caller: &str, class: &str) -> String {
    let row = html
        .split("<tr>")
        .find(|row| row.contains(&format!(">{caller}</a>")))
        .unwrap_or_else(|| panic!("no row of {caller}"));
    let href = row
        .split(&format!("class=\"{class}\" href=\""))
        .nth(1)
        .and_then(|rest| rest.split_once('"'))
        .unwrap_or_else(|| panic!("no {class} link for {caller}"))
        .0;
    href.replace("&#38;", "&")
}

/// How many requests a list shows (one page holds them all here).
async fn listed(admin: SocketAddr, address: &str) -> usize {
    let reply = page(admin, address).await;
    assert_eq!(reply.status, StatusCode::OK, "{address}: {}", html(&reply));
    html(&reply).matches("href=\"/dashboard/requests/").count()
}

#[tokio::test]
async fn the_callers_page_counts_and_ranks_who_calls() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         consumers:\n  \
         - {{ name: acme, api_keys: [\"{ACME}\"] }}\n  \
         - {{ name: globex, api_keys: [\"{GLOBEX}\"] }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - name: api\n    match: {{ prefix: /api }}\n    upstream: svc\n    \
           auth: {{ optional: true }}\n    \
           rate_limit: {{ rate: 1/h, burst: 2, key: consumer }}\n  \
         - {{ name: open, upstream: svc, auth: {{ optional: true }} }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    // acme: 6 requests from 127.0.0.1, 2 of them answered 503; globex: 4 from 127.0.0.2, 2 of
    // them past its rate limit; no consumer: 1.
    for _ in 0..4 {
        send(proxy, Method::GET, "/open", &[("x-api-key", "acme-key")]).await;
    }
    upstream.fail_with(503);
    for _ in 0..2 {
        send(proxy, Method::GET, "/open", &[("x-api-key", "acme-key")]).await;
    }
    upstream.fail_with(0);
    for _ in 0..4 {
        send_from(SECOND_CLIENT, proxy, "/api/x", &[("x-api-key", "globex-key")]).await;
    }
    send(proxy, Method::GET, "/open", &[]).await;
    wait_for_stored(&gateway, 11).await;
    let admin = gateway.admin_addr();

    let reply = page(admin, "/dashboard/callers").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", html(&reply));
    let body = html(&reply);
    assert!(body.contains("id=\"window-requests\">11<"), "{body}");
    let consumers = rows(&body, "consumers");
    let summary: Vec<(&str, &str, &str, &str, &str)> = consumers
        .iter()
        .map(|r| (&*r[0], &*r[1], &*r[2], &*r[3], &*r[4]))
        .collect();
    assert_eq!(
        summary,
        [
            ("acme", "6", "54.55%", "2 (33.33%)", "0"),
            ("globex", "4", "36.36%", "0 (0.00%)", "2"),
            ("no consumer", "1", "9.09%", "0 (0.00%)", "0"),
        ]
    );
    let clients = rows(&body, "clients");
    let by_client: Vec<(&str, &str)> = clients.iter().map(|r| (&*r[0], &*r[1])).collect();
    assert_eq!(by_client, [("127.0.0.1", "7"), ("127.0.0.2", "4")]);

    // Ranked by refusals, then by server errors.
    let refused = html(&page(admin, "/dashboard/callers?by=refused&window=5m").await);
    assert_eq!(rows(&refused, "consumers")[0][0], "globex");
    assert_eq!(rows(&refused, "clients")[0][0], "127.0.0.2");
    let erring = html(&page(admin, "/dashboard/callers?by=server_errors").await);
    assert_eq!(rows(&erring, "consumers")[0][0], "acme");

    // Each figure leads to the requests behind it.
    assert_eq!(listed(admin, &link(&body, "acme", "caller")).await, 6);
    assert_eq!(listed(admin, &link(&body, "acme", "server-errors")).await, 2);
    assert_eq!(listed(admin, &link(&body, "globex", "refused")).await, 2);
    assert_eq!(listed(admin, &link(&body, "127.0.0.2", "caller")).await, 4);
    assert_eq!(listed(admin, "/dashboard/requests?status=refused").await, 2);

    let bad = page(admin, "/dashboard/callers?window=2d&by=latency").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = html(&bad);
    assert!(
        bad.contains("window: expected one of 5m, 15m, 1h, got &#34;2d&#34;"),
        "{bad}"
    );
    assert!(
        bad.contains("by: expected one of requests, server_errors, refused"),
        "{bad}"
    );
}
