//! Service level objectives: each request of a route with `slo:` is judged good (no server
//! error, within the latency) or not, and the judgement reaches `/admin/stats`, `/metrics`
//! (which promtool accepts), every request's stored event, and the dashboard's page.

use super::metrics::{promtool_check, sample};
use http::{Method, StatusCode};
use lookout_gateway::ConfigSource;
use lookout_tests::{
    body_json, metrics_text, send, sql_rows, start_gateway, start_gateway_with, wait_for_stored, TestUpstream,
};

const TOKEN: &str = "slo-test-token";

#[tokio::test]
async fn requests_are_judged_against_their_routes_objective_everywhere_they_are_counted() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"], retry: {{ attempts: 1 }} }}\n\
         routes:\n  \
         - {{ name: plain, match: {{ prefix: /plain }}, upstream: svc }}\n  \
         - {{ name: api, upstream: svc, slo: {{ objective: 99, latency: 150ms, period: 7d, alert_min_missed: 3 }} }}\n",
        upstream.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let get = |path: &'static str| send(proxy, Method::GET, path, &[]);
    for _ in 0..6 {
        assert_eq!(get("/fast").await.status, StatusCode::OK);
    }
    // Answered, but slower than the objective's latency.
    for _ in 0..2 {
        assert_eq!(get("/slow/300").await.status, StatusCode::OK);
    }
    // Server errors miss it; the client's errors (4xx) do not.
    upstream.fail_with(503);
    for _ in 0..2 {
        assert_eq!(get("/x").await.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    upstream.fail_with(404);
    for _ in 0..2 {
        assert_eq!(get("/x").await.status, StatusCode::NOT_FOUND);
    }
    upstream.fail_with(0);
    // A route without an objective is not judged.
    for _ in 0..2 {
        assert_eq!(get("/plain").await.status, StatusCode::OK);
    }

    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let admin_get = |path: &'static str| send(admin, Method::GET, path, &auth);
    let stats = admin_get("/admin/stats").await;
    let slos = body_json(&stats)["slos"].clone();
    assert_eq!(
        slos.as_array().map(Vec::len),
        Some(1),
        "only `api` has an objective: {slos}"
    );
    let api = &slos[0];
    assert_eq!(
        (
            api["route"].as_str(),
            api["requests"].as_u64(),
            api["missed"].as_u64()
        ),
        (Some("api"), Some(12), Some(4)),
        "{api}"
    );
    assert_eq!(
        (api["objective_percent"].as_f64(), api["latency_ms"].as_u64()),
        (Some(99.0), Some(150))
    );
    assert_eq!(api["period_s"], 7 * 24 * 3600);
    // 4 misses where 1% of 12 requests were allowed: 3333% of the budget.
    let spent = api["budget_spent_percent"].as_f64().expect("a share");
    assert!((spent - 3333.33).abs() < 0.01, "{spent}");

    let metrics = String::from_utf8_lossy(&admin_get("/metrics").await.body).into_owned();
    let series = |labels: &str| sample(&metrics, &format!("lookout_slo_{labels}"));
    assert_eq!(
        series(r#"requests_total{http_route="api",upstream="svc",slo="met"}"#),
        Some(8.0)
    );
    assert_eq!(
        series(r#"requests_total{http_route="api",upstream="svc",slo="missed"}"#),
        Some(4.0)
    );
    assert_eq!(series(r#"objective_ratio{http_route="api"}"#), Some(0.99));
    assert_eq!(
        series(r#"latency_threshold_seconds{http_route="api"}"#),
        Some(0.15)
    );
    assert_eq!(series(r#"period_seconds{http_route="api"}"#), Some(604_800.0));
    assert_eq!(series(r#"alert_min_missed{http_route="api"}"#), Some(3.0));
    assert!(
        !metrics.contains(r#"lookout_slo_requests_total{http_route="plain""#),
        "{metrics}"
    );
    promtool_check(&metrics);

    wait_for_stored(&gateway, 14).await;
    let judged = sql_rows(
        admin,
        TOKEN,
        "SELECT route, count(*) FILTER (WHERE slo_met), count(*) FILTER (WHERE NOT slo_met),
                count(*) FILTER (WHERE slo_met IS NULL)
         FROM requests GROUP BY route ORDER BY route",
    )
    .await;
    assert_eq!(judged, serde_json::json!([["api", 8, 4, 0], ["plain", 0, 0, 2]]));

    // The page reads the minutes' rollups, which come once a minute closes: until then it
    // shows the objective with no data.
    let page = admin_get("/dashboard/slos").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("99% of requests without a server error and within 150.0 ms, over 7 days"),
        "{html}"
    );
    assert!(
        html.contains(r#"id="slo-api""#) && !html.contains(r#"id="slo-plain""#),
        "{html}"
    );
    // The route's own page has a card of it; a route without an objective has none.
    let api_page = admin_get("/dashboard/routes/api").await;
    let api_html = String::from_utf8_lossy(&api_page.body);
    assert!(
        api_html.contains(r#"id="route-objective""#) && api_html.contains("no data"),
        "{api_html}"
    );
    let plain_page = admin_get("/dashboard/routes/plain").await;
    assert_eq!(plain_page.status, StatusCode::OK);
    assert!(!String::from_utf8_lossy(&plain_page.body).contains("route-objective"));
    // Its link lists the requests that missed the objective: the slow ones and the 503s.
    let missed = admin_get("/dashboard/requests?route=api&status=slo_missed").await;
    let list = String::from_utf8_lossy(&missed.body);
    // Statuses as the table's cells give them: a bare "404" may be part of a port or an id.
    assert!(list.contains("/slow/300") && list.contains(">503<"), "{list}");
    assert!(!list.contains("/fast") && !list.contains(">404<"), "{list}");
}

/// An objective changed by a reload is the one exposed from then on; the requests judged so far
/// stay counted; an objective removed takes its series with it.
#[tokio::test]
async fn a_reload_changes_the_objective_in_force_and_keeps_the_counts() {
    let upstream = TestUpstream::start("svc").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("lookout.yaml");
    let config = |slo: &str| {
        format!(
            "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\n\
             analytics: {{ store: off }}\n\
             upstreams:\n  - {{ name: svc, instances: [\"{}\"], retry: {{ attempts: 1 }} }}\n\
             routes:\n  - {{ name: api, upstream: svc{slo} }}\n",
            upstream.addr
        )
    };
    std::fs::write(&file, config(", slo: { objective: 99, latency: 150ms }")).expect("write");
    let gateway = start_gateway_with(ConfigSource::File(file.clone())).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert_eq!(send(proxy, Method::GET, "/", &[]).await.status, StatusCode::OK);
    upstream.fail_with(503);
    assert_eq!(
        send(proxy, Method::GET, "/", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    upstream.fail_with(0);

    let reload = |slo: &'static str| {
        std::fs::write(&file, config(slo)).expect("rewrite");
        send(admin, Method::POST, "/admin/reload", &[])
    };
    assert_eq!(reload(", slo: { objective: 95 }").await.status, StatusCode::OK);
    let slos = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await)["slos"].clone();
    assert_eq!(
        (
            slos[0]["objective_percent"].as_f64(),
            slos[0]["latency_ms"].is_null()
        ),
        (Some(95.0), true),
        "{slos}"
    );
    assert_eq!(
        (slos[0]["requests"].as_u64(), slos[0]["missed"].as_u64()),
        (Some(2), Some(1))
    );
    let metrics = metrics_text(admin).await;
    assert_eq!(
        sample(&metrics, r#"lookout_slo_objective_ratio{http_route="api"}"#),
        Some(0.95)
    );
    assert!(
        !metrics.contains("lookout_slo_latency_threshold_seconds{"),
        "{metrics}"
    );

    assert_eq!(reload("").await.status, StatusCode::OK);
    let slos = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await)["slos"].clone();
    assert_eq!(slos, serde_json::json!([]));
    let metrics = metrics_text(admin).await;
    assert!(!metrics.contains("lookout_slo_"), "{metrics}");
}
