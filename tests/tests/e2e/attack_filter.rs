//! The attack filter: classic SQL injection and XSS in the path, the query and a JSON or form
//! body are refused (403) on a blocking route and only recorded on a logging one; ordinary
//! requests that look a little like attacks pass untouched.

use super::metrics::scraped_sample;
use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_body, sql_rows, start_gateway, wait_for_stored, TestUpstream};
use serde_json::json;

const TOKEN: &str = "attack-test-token";

async fn gateway(upstream: &TestUpstream) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         security: {{ attack_filter: {{ mode: block }} }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - {{ name: watch, match: {{ prefix: /watch }}, upstream: svc, security: {{ attack_filter: {{ mode: log }} }} }}\n  \
         - {{ name: books, upstream: svc }}\n",
        upstream.addr
    ))
    .await
}

#[tokio::test]
async fn classic_attacks_are_blocked_where_they_appear() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let attacks = [
        "/books?id=1%27%20OR%20%271%27%3D%271",
        "/books?id=1%20UNION%20SELECT%20username,password%20FROM%20users--",
        "/books/1;DROP%20TABLE%20books--",
        "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E",
        "/search?q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
        "/search?q=%22%3E%3Ciframe%20src%3Djavascript:alert(1)%3E",
    ];
    for path in attacks {
        let reply = send(proxy, Method::GET, path, &[]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body_json(&reply)["error"]["code"], "attack_blocked");
    }
    let json_body = send_body(
        proxy,
        Method::POST,
        "/books",
        &[("content-type", "application/json")],
        r#"{"review": {"text": "<svg onload=alert(1)>"}}"#,
    )
    .await;
    assert_eq!(json_body.status, StatusCode::FORBIDDEN);
    let form = send_body(
        proxy,
        Method::POST,
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        "user=admin%27--&password=x",
    )
    .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert_eq!(upstream.hits(), 0, "nothing hostile reached the upstream");

    wait_for_stored(&gateway, 8).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT threat, count(*) FROM requests WHERE blocked_by = 'attack_filter' GROUP BY ALL ORDER BY ALL",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            ["sqli in body", 1],
            ["sqli in path", 1],
            ["sqli in query", 2],
            ["xss in body", 1],
            ["xss in query", 3]
        ])
    );
    let series = "lookout_attack_filter_detections_total{http_route=\"books\",kind=\"xss\",place=\"query\",action=\"blocked\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(3.0)
    );
}

#[tokio::test]
async fn ordinary_requests_that_look_a_little_like_attacks_pass() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let ordinary = [
        "/books?author=O%27Reilly",
        "/books?title=select%20a%20book%20from%20the%20shelf",
        "/books?title=I%27d%20rather%20--%20not",
        "/books?q=Tom%20%26%20Jerry%3B%20Itchy%20%26%20Scratchy",
        "/books?q=drop%20shipping%20101",
        "/books?q=1%20or%202%20days",
        "/books?q=rock%20%26%20roll&sort=-year",
        "/books?q=a%20%3C%20b%20and%20c%20%3E%20d",
        "/books/978-0-13-468599-1",
        "/users/jane.o%27neil@example.com",
        "/books?filter=price%3E%3D10&fields=id,title",
    ];
    for path in ordinary {
        assert_eq!(
            send(proxy, Method::GET, path, &[]).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let review = send_body(
        proxy,
        Method::POST,
        "/books/1/reviews",
        &[("content-type", "application/json")],
        r#"{"text": "Don't miss it -- the <b>best</b> book on SQL I've read; 5/5", "stars": 5}"#,
    )
    .await;
    assert_eq!(review.status, StatusCode::OK);
    assert_eq!(upstream.hits(), ordinary.len() + 1);
}

#[tokio::test]
async fn a_logging_route_lets_attacks_through_and_records_them() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/watch?id=1%27%20OR%201%3D1--",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    wait_for_stored(&gateway, 1).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, blocked_by, threat FROM requests",
    )
    .await;
    assert_eq!(rows, json!([[200, null, "sqli in query"]]));
    let series = "lookout_attack_filter_detections_total{http_route=\"watch\",kind=\"sqli\",place=\"query\",action=\"logged\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(1.0)
    );
}
