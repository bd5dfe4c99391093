//! Reload: a bad config is rejected with its errors and the running routes keep serving; a good
//! one takes over.

use http::{Method, StatusCode};
use lookout_gateway::ConfigSource;
use lookout_tests::{body_json, send, start_gateway_with, TestUpstream};

fn config(route_path: &str, upstream: &TestUpstream) -> String {
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\nupstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ prefix: {route_path} }}, upstream: svc }}\n",
        upstream.addr
    )
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_routes_and_a_good_one_replaces_them() {
    let upstream = TestUpstream::start("svc").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, config("/old", &upstream)).expect("write config");
    let gateway = start_gateway_with(ConfigSource::File(path.clone())).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert_eq!(send(proxy, Method::GET, "/old", &[]).await.status, StatusCode::OK);

    std::fs::write(&path, "routes:\n  - { name: r, upstream: missing }\n").expect("write bad config");
    let rejected = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let problem = &body_json(&rejected)["error"]["problems"][0];
    assert_eq!(problem["field"], "routes[0].upstream");
    assert_eq!(problem["line"], 2);
    assert_eq!(
        send(proxy, Method::GET, "/old", &[]).await.status,
        StatusCode::OK,
        "old routes still serve"
    );

    std::fs::write(&path, config("/new", &upstream)).expect("write new config");
    let reloaded = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(reloaded.status, StatusCode::OK);
    assert_eq!(body_json(&reloaded)["generation"], 2);
    assert_eq!(send(proxy, Method::GET, "/new", &[]).await.status, StatusCode::OK);
    assert_eq!(
        send(proxy, Method::GET, "/old", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_admin_api_requires_its_token_when_one_is_set() {
    let upstream = TestUpstream::start("svc").await;
    let text = format!("{}admin: {{ token: s3cret }}\n", config("/", &upstream));
    let gateway = start_gateway_with(ConfigSource::Inline {
        name: "t.yaml".into(),
        text,
    })
    .await;
    let admin = gateway.admin_addr();
    let refused = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(&refused)["error"]["code"], "unauthorized");
    let wrong = send(
        admin,
        Method::GET,
        "/admin/stats",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let allowed = send(
        admin,
        Method::GET,
        "/admin/stats",
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        send(admin, Method::GET, "/healthz", &[]).await.status,
        StatusCode::OK,
        "probes stay open"
    );
}
