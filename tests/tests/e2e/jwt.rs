//! JWT bearer tokens: tokens minted here with the fixture keys, verified by the gateway
//! against a JWKS served by a test server (rotated mid-test) or a PEM key file; every kind of
//! bad token is a 401 with a `Bearer` challenge, valid tokens without the scope or claim a
//! route requires are 403, and claims go upstream as headers a client cannot forge.

use http::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use lookout_gateway::Gateway;
use lookout_tests::jwt::{fixture, mint, mint_hs, now, JwksServer};
use lookout_tests::{body_json, send, sql_rows, start_gateway, wait_for_stored, Reply, TestUpstream};
use serde_json::{json, Value};

const TOKEN: &str = "jwt-test-token";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "books-api";

async fn gateway(upstream: &TestUpstream, jwks: &JwksServer) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         consumers:\n  - {{ name: alice, groups: [staff] }}\n\
         jwt_providers:\n  \
         - name: idp\n    algorithms: [RS256, PS256]\n    jwks_url: \"{}\"\n    \
           issuer: \"{ISSUER}\"\n    audiences: [{AUDIENCE}]\n    leeway: 5s\n    \
           jwks_min_refetch: 1s\n    \
           forward_claims: {{ sub: x-user, tenant: x-tenant }}\n  \
         - name: edge\n    algorithms: [ES256]\n    key_file: \"{}\"\n  \
         - name: ed\n    algorithms: [EdDSA]\n    key_file: \"{}\"\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - {{ name: read, match: {{ prefix: /read }}, upstream: svc, auth: {{ jwt: idp, scopes: [books:read] }} }}\n  \
         - {{ name: gold, match: {{ prefix: /gold }}, upstream: svc, auth: {{ jwt: idp, claims: {{ tier: [gold] }} }} }}\n  \
         - {{ name: staff, match: {{ prefix: /staff }}, upstream: svc, auth: {{ jwt: idp, groups: [staff] }} }}\n  \
         - {{ name: es, match: {{ prefix: /es }}, upstream: svc, auth: {{ jwt: edge }} }}\n  \
         - {{ name: ed, match: {{ prefix: /ed }}, upstream: svc, auth: {{ jwt: ed }} }}\n",
        jwks.url(),
        fixture("ec.pub"),
        fixture("ed.pub"),
        upstream.addr
    ))
    .await
}

fn claims(extra: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now() + 600,
        "scope": "books:read books:write", "tier": "gold", "tenant": "acme"
    });
    for (key, value) in extra.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(key);
        } else {
            claims[key] = value.clone();
        }
    }
    claims
}

async fn call(gateway: &Gateway, path: &str, token: &str) -> Reply {
    let bearer = format!("Bearer {token}");
    send(
        gateway.proxy_addr(),
        Method::GET,
        path,
        &[("authorization", &bearer)],
    )
    .await
}

fn refusal(reply: &Reply) -> (StatusCode, String) {
    let message = body_json(reply)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (reply.status, message)
}

#[tokio::test]
async fn a_valid_token_names_its_consumer_and_forwards_claims_not_itself() {
    let upstream = TestUpstream::start("svc").await;
    let keys = [("a", "rsa-a", Algorithm::RS256), ("p", "rsa-b", Algorithm::PS256)];
    let jwks = JwksServer::start(&keys).await;
    let gateway = gateway(&upstream, &jwks).await;

    let token = mint("rsa-a", Algorithm::RS256, Some("a"), &claims(json!({})));
    let forged = [
        ("authorization", format!("Bearer {token}")),
        ("x-user", "mallory".into()),
    ];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = send(gateway.proxy_addr(), Method::GET, "/read/1", &forged).await;
    assert_eq!(reply.status, StatusCode::OK);
    let headers = &body_json(&reply)["headers"];
    assert_eq!(
        headers["x-user"], "alice",
        "the token's subject, not the client's header"
    );
    assert_eq!(headers["x-tenant"], "acme");
    assert!(
        headers.get("authorization").is_none(),
        "the token stays at the gateway"
    );

    let ps = mint("rsa-b", Algorithm::PS256, Some("p"), &claims(json!({})));
    assert_eq!(
        call(&gateway, "/staff", &ps).await.status,
        StatusCode::OK,
        "PS256, group of a configured consumer"
    );
    let es = mint("ec", Algorithm::ES256, None, &claims(json!({})));
    assert_eq!(
        call(&gateway, "/es", &es).await.status,
        StatusCode::OK,
        "ES256 from a PEM file"
    );
    let ed = mint("ed", Algorithm::EdDSA, None, &claims(json!({})));
    assert_eq!(
        call(&gateway, "/ed", &ed).await.status,
        StatusCode::OK,
        "EdDSA from a PEM file"
    );

    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT DISTINCT consumer FROM requests",
    )
    .await;
    assert_eq!(rows, json!([["alice"]]));
}

#[tokio::test]
async fn bad_tokens_are_401_with_a_bearer_challenge() {
    let upstream = TestUpstream::start("svc").await;
    let jwks = JwksServer::start(&[("a", "rsa-a", Algorithm::RS256)]).await;
    let gateway = gateway(&upstream, &jwks).await;
    let good = mint("rsa-a", Algorithm::RS256, Some("a"), &claims(json!({})));

    let missing = send(gateway.proxy_addr(), Method::GET, "/read/1", &[]).await;
    assert_eq!(
        refusal(&missing),
        (StatusCode::UNAUTHORIZED, "a bearer token is required".into())
    );
    assert_eq!(missing.headers["www-authenticate"], "Bearer realm=\"lookout\"");

    let (head, rest) = good.split_once('.').expect("three parts");
    let (payload, _) = rest.split_once('.').expect("three parts");
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    let rs_pem = std::fs::read(fixture("rsa-a.pub")).expect("public key");
    let mut tampered_claims = claims(json!({}));
    tampered_claims["sub"] = json!("admin");
    let tampered_payload = mint("rsa-b", Algorithm::RS256, Some("a"), &tampered_claims);
    let tampered_payload = tampered_payload.split('.').nth(1).expect("payload");
    let signature = good.rsplit('.').next().expect("signature");
    let cases = [
        ("garbage".to_owned(), "the bearer token is malformed"),
        (
            format!("{none_header}.{payload}."),
            "the bearer token is malformed",
        ),
        (
            format!("{head}.{tampered_payload}.{signature}"),
            "the token's signature is not valid",
        ),
        (
            mint(
                "rsa-a",
                Algorithm::RS256,
                Some("a"),
                &claims(json!({"exp": now() - 60})),
            ),
            "the token has expired",
        ),
        (
            mint(
                "rsa-a",
                Algorithm::RS256,
                Some("a"),
                &claims(json!({"nbf": now() + 600})),
            ),
            "the token is not valid yet",
        ),
        (
            mint(
                "rsa-a",
                Algorithm::RS256,
                Some("a"),
                &claims(json!({"aud": "other-api"})),
            ),
            "the token is not meant for this audience",
        ),
        (
            mint(
                "rsa-a",
                Algorithm::RS256,
                Some("a"),
                &claims(json!({"iss": "https://evil.test"})),
            ),
            "the token's issuer is not trusted",
        ),
        (
            mint(
                "rsa-a",
                Algorithm::RS256,
                Some("a"),
                &claims(json!({"exp": null})),
            ),
            "the token lacks a required claim",
        ),
        (
            mint("rsa-b", Algorithm::RS256, Some("zzz"), &claims(json!({}))),
            "the token is signed with an unknown key",
        ),
        // The RSA public key used as an HMAC secret: the classic confusion attack.
        (
            mint_hs(&rs_pem, &claims(json!({}))),
            "the token's algorithm is not allowed",
        ),
        (
            mint("rsa-a", Algorithm::RS384, Some("a"), &claims(json!({}))),
            "the token's algorithm is not allowed",
        ),
    ];
    for (token, message) in cases {
        let reply = call(&gateway, "/read/1", &token).await;
        assert_eq!(
            refusal(&reply),
            (StatusCode::UNAUTHORIZED, message.to_owned()),
            "{token}"
        );
        assert_eq!(reply.headers["www-authenticate"], "Bearer realm=\"lookout\"");
    }
    // Just expired, within the 5 s leeway: still good.
    let lenient = mint(
        "rsa-a",
        Algorithm::RS256,
        Some("a"),
        &claims(json!({"exp": now() - 2})),
    );
    assert_eq!(call(&gateway, "/read/1", &lenient).await.status, StatusCode::OK);
    assert_eq!(upstream.hits(), 1, "no refused request reached the upstream");

    wait_for_stored(&gateway, 13).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT blocked_by, count(*) FROM requests WHERE status = 401 GROUP BY ALL",
    )
    .await;
    assert_eq!(rows, json!([["auth", 12]]));
}

#[tokio::test]
async fn valid_tokens_without_the_scope_claim_or_group_are_403() {
    let upstream = TestUpstream::start("svc").await;
    let jwks = JwksServer::start(&[("a", "rsa-a", Algorithm::RS256)]).await;
    let gateway = gateway(&upstream, &jwks).await;
    let token = |extra: Value| mint("rsa-a", Algorithm::RS256, Some("a"), &claims(extra));

    let no_scope = call(&gateway, "/read/1", &token(json!({"scope": "books:write"}))).await;
    assert_eq!(
        refusal(&no_scope),
        (
            StatusCode::FORBIDDEN,
            "the token lacks a scope this route requires".into()
        )
    );
    let scp_list = call(
        &gateway,
        "/read/1",
        &token(json!({"scope": null, "scp": ["books:read"]})),
    )
    .await;
    assert_eq!(scp_list.status, StatusCode::OK, "`scp` as a list counts too");
    let silver = call(&gateway, "/gold", &token(json!({"tier": "silver"}))).await;
    assert_eq!(
        refusal(&silver),
        (
            StatusCode::FORBIDDEN,
            "the token lacks a claim value this route requires".into()
        )
    );
    let stranger = call(&gateway, "/staff", &token(json!({"sub": "bob"}))).await;
    assert_eq!(
        refusal(&stranger),
        (
            StatusCode::FORBIDDEN,
            "this consumer is not allowed on this route".into()
        )
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_unknown_kids_cannot_hammer_the_idp() {
    let upstream = TestUpstream::start("svc").await;
    let jwks = JwksServer::start(&[("a", "rsa-a", Algorithm::RS256)]).await;
    let gateway = gateway(&upstream, &jwks).await;
    let old = mint("rsa-a", Algorithm::RS256, Some("a"), &claims(json!({})));
    assert_eq!(call(&gateway, "/read/1", &old).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 1);

    // The provider rotates to key `b`; the first token signed with it makes the gateway look.
    jwks.rotate(&[("b", "rsa-b", Algorithm::RS256)]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let new = mint("rsa-b", Algorithm::RS256, Some("b"), &claims(json!({})));
    assert_eq!(call(&gateway, "/read/1", &new).await.status, StatusCode::OK);
    assert_eq!(jwks.fetches(), 2);
    assert_eq!(
        call(&gateway, "/read/1", &old).await.status,
        StatusCode::UNAUTHORIZED,
        "key `a` is gone"
    );

    // Made-up key ids: at most one fetch per `jwks_min_refetch` (1 s), however many tokens:
    // one at the start, and one more for each second the loop took (more on a loaded machine).
    let before = jwks.fetches();
    let started = std::time::Instant::now();
    for i in 0..50 {
        let bogus = mint(
            "rsa-b",
            Algorithm::RS256,
            Some(&format!("made-up-{i}")),
            &claims(json!({})),
        );
        assert_eq!(
            call(&gateway, "/read/1", &bogus).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let allowed = 1 + started.elapsed().as_secs() as usize;
    assert!(
        jwks.fetches() - before <= allowed.min(49),
        "{} fetches for 50 unknown kids in {:?}",
        jwks.fetches() - before,
        started.elapsed()
    );
}
