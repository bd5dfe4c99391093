//! The admin listener's refusals. Those axum writes itself (a method a path does not take, a
//! query string or form that does not parse) say what was wrong like every other: JSON on the
//! API, the dashboard's error page on its pages, with their status and `Allow` kept. Without a
//! token, the listener answers only requests addressed to a loopback name, and no page of
//! another origin may write to it.

use http::{Method, StatusCode};
use lookout_tests::{body_json, send, send_body, start_gateway_to, Reply, TestUpstream};
use serde_json::json;

fn content_type(reply: &Reply) -> &str {
    reply.headers["content-type"].to_str().unwrap_or_default()
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn axums_own_refusals_are_json_on_the_api_and_error_pages_on_the_dashboard() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let admin = gateway.admin_addr();

    let wrong_method = send(admin, Method::DELETE, "/admin/stats", &[]).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.headers["allow"], "GET,HEAD");
    assert_eq!(
        body_json(&wrong_method)["error"],
        json!({
            "code": "method_not_allowed",
            "message": "this address does not take DELETE; its Allow header lists those it takes"
        })
    );
    let get_reload = send(admin, Method::GET, "/admin/reload", &[]).await;
    assert_eq!(
        (get_reload.status, content_type(&get_reload)),
        (StatusCode::METHOD_NOT_ALLOWED, "application/json")
    );

    let bad_minutes = send(admin, Method::GET, "/dashboard/canary?minutes=soon", &[]).await;
    assert_eq!(bad_minutes.status, StatusCode::BAD_REQUEST);
    assert!(content_type(&bad_minutes).starts_with("text/html"));
    let page = text(&bad_minutes);
    assert!(page.contains("<h1>Bad Request</h1>"), "{page}");
    assert!(page.contains("minutes: invalid digit found in string"), "{page}");

    let posted = send(admin, Method::POST, "/dashboard", &[]).await;
    assert_eq!(posted.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(posted.headers["allow"], "GET,HEAD");
    assert!(text(&posted).contains("this address does not take POST;"));

    let login = [("content-type", "application/json")];
    let wrong_form = send_body(admin, Method::POST, "/dashboard/login", &login, "{}").await;
    assert_eq!(wrong_form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(content_type(&wrong_form).starts_with("text/html"));
    assert!(text(&wrong_form).contains("<h1>Unsupported Media Type</h1>"));
    gateway.shutdown().await;
}

/// A web page can point a name of its own at 127.0.0.1 (DNS rebinding) and read what a
/// tokenless admin listener answers; the browser sends that name as `Host`, so it is refused.
#[tokio::test]
async fn without_a_token_only_requests_to_loopback_names_are_answered() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let admin = gateway.admin_addr();
    for path in ["/admin/stats", "/dashboard", "/metrics"] {
        let rebound = send(admin, Method::GET, path, &[("host", "rebound.example:9901")]).await;
        assert_eq!(rebound.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(body_json(&rebound)["error"]["code"], "not_loopback_host");
    }
    let port = admin.port().to_string();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let local = send(admin, Method::GET, "/admin/stats", &[("host", &host)]).await;
        assert_eq!(local.status, StatusCode::OK, "{host}");
    }
    gateway.shutdown().await;
}

/// A page of another site can make the browser POST a form here (a reload, a query) though it
/// cannot read the answer: a write whose `Origin` is not the listener's own is refused.
#[tokio::test]
async fn writes_from_pages_of_other_origins_are_refused() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let admin = gateway.admin_addr();
    let query = |origin: String| async move {
        let headers = [("origin", origin.as_str()), ("content-type", "text/plain")];
        send_body(admin, Method::POST, "/api/sql", &headers, "SELECT 1").await
    };
    let forged = query("http://evil.example".to_owned()).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(body_json(&forged)["error"]["code"], "cross_site_request");
    let reload = send(admin, Method::POST, "/admin/reload", &[("origin", "null")]).await;
    assert_eq!(body_json(&reload)["error"]["code"], "cross_site_request");

    // The listener's own pages (the SQL console) get past, to the store this gateway lacks.
    let own = query(format!("http://{admin}")).await;
    assert_eq!(body_json(&own)["error"]["code"], "analytics_off");
    gateway.shutdown().await;
}
