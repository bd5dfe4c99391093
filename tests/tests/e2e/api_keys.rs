//! Consumers and API keys: a key (from a header or the query) identifies its consumer, which
//! goes into the event, `${consumer}` and the rate limit's key; a missing or wrong key is 401
//! with a challenge, a consumer the route does not admit is 403, and the key never reaches the
//! upstream.

use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, sql_rows, start_gateway, wait_for_stored, TestUpstream};
use serde_json::json;

const TOKEN: &str = "api-keys-test-token";
use lookout_tests::keys::{ACME_DIGEST as ACME, GLOBEX_DIGEST as GLOBEX};

async fn gateway(upstream: &TestUpstream) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         consumers:\n  \
         - {{ name: acme, groups: [partners], api_keys: [\"{ACME}\"] }}\n  \
         - {{ name: globex, api_keys: [\"{GLOBEX}\"] }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - name: partners\n    match: {{ prefix: /partners }}\n    upstream: svc\n    \
           auth: {{ groups: [partners] }}\n  \
         - name: limited\n    match: {{ prefix: /limited }}\n    upstream: svc\n    \
           auth: {{ api_key: {{ query: key }} }}\n    \
           rate_limit: {{ rate: 1/min, burst: 2, key: consumer }}\n  \
         - name: renamed\n    match: {{ template: \"/renamed/{{rest}}\" }}\n    \
           rewrite: \"/v2/{{rest}}\"\n    upstream: svc\n    \
           auth: {{ api_key: {{ query: key }} }}\n  \
         - name: open\n    upstream: svc\n    auth: {{ optional: true }}\n    \
           transform: {{ request_headers: {{ set: {{ x-consumer: \"${{consumer}}\" }} }} }}\n",
        upstream.addr
    ))
    .await
}

#[tokio::test]
async fn a_key_names_its_consumer_and_never_reaches_the_upstream() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();

    let reply = send(proxy, Method::GET, "/partners/1", &[("x-api-key", "acme-key")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        body_json(&reply)["headers"].get("x-api-key").is_none(),
        "the key stays at the gateway"
    );

    let reply = send(proxy, Method::GET, "/other", &[("x-api-key", "globex-key")]).await;
    assert_eq!(
        body_json(&reply)["headers"]["x-consumer"],
        "globex",
        "${{consumer}}"
    );
    let anonymous = send(proxy, Method::GET, "/other", &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK, "the key is optional on `open`");
    assert_eq!(body_json(&anonymous)["headers"]["x-consumer"], "");

    wait_for_stored(&gateway, 3).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT route, consumer FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([["partners", "acme"], ["open", "globex"], ["open", null]])
    );
}

#[tokio::test]
async fn missing_or_wrong_keys_are_401_and_unadmitted_consumers_403() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();

    let missing = send(proxy, Method::GET, "/partners/1", &[]).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        "ApiKey realm=\"lookout\", header=\"x-api-key\""
    );
    assert_eq!(body_json(&missing)["error"]["code"], "unauthorized");
    assert_eq!(body_json(&missing)["error"]["message"], "an API key is required");

    let wrong = send(proxy, Method::GET, "/partners/1", &[("x-api-key", "acme-kez")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(&wrong)["error"]["message"], "the API key is not valid");
    let wrong_but_optional = send(proxy, Method::GET, "/other", &[("x-api-key", "nope")]).await;
    assert_eq!(
        wrong_but_optional.status,
        StatusCode::UNAUTHORIZED,
        "a wrong key is never let in"
    );

    let outsider = send(proxy, Method::GET, "/partners/1", &[("x-api-key", "globex-key")]).await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    assert_eq!(body_json(&outsider)["error"]["code"], "forbidden");
    assert_eq!(upstream.hits(), 0, "no refused request reached the upstream");

    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, error_kind, consumer FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [401, "unauthorized", null],
            [401, "unauthorized", null],
            [401, "unauthorized", null],
            [403, "forbidden", "globex"]
        ])
    );
}

#[tokio::test]
async fn a_consumer_keyed_limit_gives_each_consumer_its_own_budget() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let get = |key: &'static str| async move {
        send(proxy, Method::GET, &format!("/limited/x?key={key}"), &[])
            .await
            .status
    };
    assert_eq!(get("acme-key").await, StatusCode::OK);
    assert_eq!(get("acme-key").await, StatusCode::OK);
    assert_eq!(
        get("acme-key").await,
        StatusCode::TOO_MANY_REQUESTS,
        "acme's burst of 2 is spent"
    );
    assert_eq!(
        get("globex-key").await,
        StatusCode::OK,
        "from the same IP, globex has its own"
    );
    assert_eq!(get("globex-key").await, StatusCode::OK);
    assert_eq!(get("globex-key").await, StatusCode::TOO_MANY_REQUESTS);
    let missing = send(proxy, Method::GET, "/limited/x", &[]).await;
    assert_eq!(
        missing.headers["www-authenticate"],
        "ApiKey realm=\"lookout\", query=\"key\""
    );
}

#[tokio::test]
async fn a_key_in_the_query_is_taken_out_of_the_query_that_goes_upstream() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let forwarded = |target: &'static str| async move {
        let reply = send(proxy, Method::GET, target, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{target}");
        body_json(&reply)["path"].clone()
    };
    assert_eq!(forwarded("/limited/a?key=acme-key").await, "/limited/a");
    assert_eq!(
        forwarded("/limited/b?page=2&k%65y=acme-key&monkey=1&key=acme-key&q=a+b%26c").await,
        "/limited/b?page=2&monkey=1&q=a+b%26c",
        "every occurrence, however encoded; the rest as sent"
    );
    assert_eq!(
        forwarded("/renamed/c?key=globex-key&page=3").await,
        "/v2/c?page=3",
        "and from a rewritten path, which carries the query"
    );
}

/// A path that resolves to a guarded route is guarded: the gateway routes on the path in normal
/// form (dot segments, unreserved escapes, runs of slashes resolved), forwards that form, and
/// stores the path as the client sent it.
#[tokio::test]
async fn paths_that_resolve_to_a_guarded_route_are_guarded() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let disguised = [
        "/other/../partners/1",
        "/other/%2e%2E/partners/1",
        "/%70artners/1",
        "//partners/1",
        "/./partners/1",
    ];
    for path in disguised {
        let reply = send(proxy, Method::GET, path, &[]).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
    assert_eq!(upstream.hits(), 0, "no disguised request reached the upstream");

    let key = [("x-api-key", "acme-key")];
    let reply = send(proxy, Method::GET, "/other/..//partners/./1?q=/../x", &key).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        body_json(&reply)["path"],
        "/partners/1?q=/../x",
        "the query is left as sent"
    );
    let reply = send(proxy, Method::GET, "/files/a%2Fb/..%2f..%2fc", &[]).await;
    assert_eq!(
        body_json(&reply)["path"],
        "/files/a%2Fb/..%2f..%2fc",
        "an encoded slash separates nothing"
    );

    wait_for_stored(&gateway, disguised.len() + 2).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT path, route, status FROM requests WHERE path LIKE '/other/..//%'",
    )
    .await;
    assert_eq!(rows, json!([["/other/..//partners/./1", "partners", 200]]));
}
