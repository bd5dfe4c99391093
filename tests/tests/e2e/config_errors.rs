//! Config errors name the file, line and field, and validation reports every problem at once.

use lookout_gateway::{load_file, load_str, ConfigError};

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("gw.yaml", text) {
        Ok(_) => panic!("config should be rejected:\n{text}"),
        Err(errors) => errors.0,
    }
}

/// The errors of `text` are exactly these `(field, line, says)`, as [`each_names_its_field`] reads them.
fn only_these_errors(text: &str, expected: &[(&str, usize, &str)]) {
    let all = errors(text);
    each_names_its_field(&all, expected);
    assert_eq!(all.len(), expected.len(), "{all:#?}");
}

/// Each `(field, line, says)`: an error for `field`, on `line`, whose message contains `says`.
fn each_names_its_field(errors: &[ConfigError], expected: &[(&str, usize, &str)]) {
    for &(field, line, says) in expected {
        let error = find(errors, field);
        assert_eq!(error.line, line, "{error:?}");
        assert!(error.message.contains(says), "{error:?}");
    }
}

fn find<'a>(errors: &'a [ConfigError], field: &str) -> &'a ConfigError {
    errors
        .iter()
        .find(|e| e.field == field)
        .unwrap_or_else(|| panic!("no error for {field}: {errors:?}"))
}

#[test]
fn semantic_errors_name_line_and_field_and_are_all_reported() {
    let text = "\
upstreams:
  - name: books
    instances: [\"127.0.0.1:3000\", \"no-port-here\"]
    connect_timeout: soon
    balance: fastest
routes:
  - name: a
    upstream: books
  - name: a
    match: { template: \"/books/{id}\" }
    rewrite: \"/v2/{bookId}\"
    upstream: movies
listeners:
  proxy: 127.0.0.1:99999
";
    let all = errors(text);
    let instance = find(&all, "upstreams[0].instances[1]");
    assert_eq!((instance.line, &*instance.file), (3, "gw.yaml"));
    assert!(instance.message.contains("needs a port"), "{instance:?}");
    let timeout = find(&all, "upstreams[0].connect_timeout");
    assert_eq!(timeout.line, 4);
    assert!(timeout.message.contains("invalid duration `soon`"), "{timeout:?}");
    assert_eq!(find(&all, "upstreams[0].balance").line, 5);
    let upstream = find(&all, "routes[1].upstream");
    assert_eq!(upstream.line, 12);
    assert!(upstream.message.contains("unknown upstream `movies`"));
    let rewrite = find(&all, "routes[1].rewrite");
    assert_eq!(rewrite.line, 11);
    assert!(rewrite.message.contains("{bookId}"));
    assert_eq!(find(&all, "listeners.proxy").line, 14);
    let duplicate = find(&all, "routes[1].name");
    assert_eq!(duplicate.line, 9);
    assert!(duplicate.message.contains("duplicate route name `a`"));
    assert_eq!(all.len(), 7, "{all:#?}");
    let shown = lookout_gateway::ConfigErrors(all).to_string();
    assert!(
        shown.contains("gw.yaml:12:15: routes[1].upstream: unknown upstream `movies`"),
        "{shown}"
    );
}

/// The unmatched requests are counted, charted and stored as `unmatched`, and the store's
/// rollups sum all routes as `*`: a route of either name would be counted with them.
#[test]
fn a_route_cannot_take_a_name_the_store_and_metrics_reserve() {
    let all = errors(
        "upstreams: [{ name: a, instances: [\"127.0.0.1:3000\"] }]\n\
         routes:\n  - { name: unmatched, upstream: a }\n  - { name: \"*\", upstream: a }\n",
    );
    let unmatched = find(&all, "routes[0].name");
    assert_eq!(unmatched.line, 3);
    assert!(
        unmatched
            .message
            .contains("`unmatched` is reserved for the requests no route matches"),
        "{unmatched:?}"
    );
    let every = find(&all, "routes[1].name");
    assert_eq!(every.line, 4);
    assert!(
        every.message.contains("`*` is reserved for all routes together"),
        "{every:?}"
    );
    assert_eq!(all.len(), 2, "{all:#?}");
}

#[test]
fn hosts_ports_and_paths_that_could_never_work_are_rejected() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:3000\", \"b.internal:99999\", \"c.internal:0\"] }
  - { name: a, instances: [\"no-port\"], host_header: upstream, protocol: grpc }
routes:
  - { name: any, match: { host: \"*\" }, upstream: a }
  - { name: glued, match: { host: \"*example.com\" }, upstream: a }
  - { name: port, match: { host: \"api.example.com:8443\" }, upstream: a }
  - { name: space, match: { host: \"api example\" }, upstream: a }
  - { name: twice, match: { template: \"/a/{id}/b/{id}\" }, upstream: a }
  - { name: fine, match: { host: \"*.Example.com.\", template: \"/x/{id}\" }, upstream: a }
  - { name: dots, match: { prefix: \"/api/./v1//\" }, upstream: a }
  - { name: strip, match: { prefix: /s }, strip_prefix: \"/s//\", upstream: a }
limits: { max_connections: 0 }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].instances[1]", 2, "no valid port (1 to 65535)"),
            ("upstreams[0].instances[2]", 2, "no valid port"),
            ("upstreams[1].name", 3, "duplicate upstream name `a`"),
            ("upstreams[1].instances[0]", 3, "needs a port"),
            ("upstreams[1].host_header", 3, "is not `client` or `instance`"),
            ("upstreams[1].protocol", 3, "`grpc` is not `http1` or `http2`"),
            ("routes[0].match.host", 5, "`*` only as its first label"),
            ("routes[1].match.host", 6, "`*` only as its first label"),
            ("routes[2].match.host", 7, "remove it"),
            ("routes[3].match.host", 8, "not a host name or address"),
            ("routes[4].match.template", 9, "captures `id` twice"),
            ("routes[6].match.prefix", 11, "normal form (`/api/v1/`)"),
            ("routes[7].strip_prefix", 12, "normal form (`/s/`)"),
            ("limits.max_connections", 13, "at least 1"),
        ],
    );
}

#[test]
fn unknown_fields_and_wrong_types_are_rejected_with_their_place() {
    let unknown = errors("upstreams:\n  - name: a\n    instances: [\"127.0.0.1:1\"]\n    retries: 3\n");
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].line, 4, "{unknown:?}");
    assert!(unknown[0].message.contains("retries"), "{unknown:?}");
    assert!(
        unknown[0].field.starts_with("upstreams[0]") || unknown[0].field.starts_with("upstreams.0"),
        "{unknown:?}"
    );

    let wrong_type =
        errors("upstreams:\n  - name: a\n    instances: [\"127.0.0.1:1\"]\n    retry: { attempts: many }\n");
    assert_eq!(wrong_type[0].line, 4, "{wrong_type:?}");

    let bad_yaml = errors("routes: [\n");
    assert!(bad_yaml[0].line >= 1, "{bad_yaml:?}");
}

/// An instance with another scheme, or with a path, is told so rather than "invalid uri character".
#[test]
fn an_instance_with_another_scheme_or_a_path_is_told_so() {
    let all = errors(
        "upstreams:\n  - { name: a, instances: [\"ftp://files:21\", \"http://books:8080/api/v1\"] }\n\
         routes: [{ name: r, upstream: a }]\n",
    );
    let messages: Vec<_> = all.iter().map(|e| (&*e.field, &*e.message)).collect();
    assert_eq!(
        messages,
        [
            (
                "upstreams[0].instances[0]",
                "instance `ftp://files:21`: only http:// and https:// instances are supported"
            ),
            (
                "upstreams[0].instances[1]",
                "instance `http://books:8080/api/v1` has a path: an instance is an address (a route's `rewrite` or `strip_prefix` sets the path)"
            )
        ]
    );
}

/// A key given twice would otherwise have its second value win in silence: the first block of
/// upstreams gone, and its routes reported as naming an unknown upstream.
#[test]
fn a_key_given_twice_is_an_error_naming_both_places() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"] }
routes:
  - { name: r, upstream: a, timeout: 1s, timeout: 2s }
upstreams:
  - { name: b, instances: [\"127.0.0.1:2\"] }
";
    let all = errors(text);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!((all[0].line, &*all[0].field), (4, "(yaml)"), "{all:?}");
    assert_eq!(
        all[0].message,
        "`timeout` is given twice (first at line 4); give it once"
    );
    let later = errors("upstreams: []\nroutes: []\nupstreams: []\n");
    assert_eq!(
        (later[0].line, &*later[0].message),
        (3, "`upstreams` is given twice (first at line 1); give it once")
    );
    let anchored = errors("upstreams:\n  - &svc { name: a, instances: [\"127.0.0.1:1\"] }\nroutes: []\n");
    assert_eq!(anchored[0].line, 2, "{anchored:?}");
    assert!(
        anchored[0].message.contains("anchors and aliases"),
        "{anchored:?}"
    );
}

#[test]
fn an_exposed_admin_listener_needs_a_token() {
    let exposed = errors("listeners:\n  admin: 0.0.0.0:9901\n");
    let error = find(&exposed, "listeners.admin");
    assert_eq!(error.line, 2);
    assert!(error.message.contains("token"));
    assert!(load_str(
        "gw.yaml",
        "listeners:\n  admin: 0.0.0.0:9901\nadmin:\n  token: s3cret\n"
    )
    .is_ok());
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let errors = load_file(std::path::Path::new("/nonexistent/lookout.yaml"))
        .expect_err("missing file")
        .0;
    assert_eq!(&*errors[0].file, "/nonexistent/lookout.yaml");
    assert!(errors[0].message.contains("cannot read"));
}

#[test]
fn rate_limit_errors_name_their_field() {
    let text = "\
redis: { url: \"http://not-redis\" }
upstreams:
  - { name: svc, instances: [\"127.0.0.1:3000\"] }
routes:
  - name: a
    upstream: svc
    rate_limit: { rate: 100/fortnight, key: cookie }
  - name: b
    upstream: svc
    rate_limit: { rate: 10/s, burst: 0, on_redis_error: maybe }
";
    let all = errors(text);
    assert!(find(&all, "redis.url").message.contains("invalid Redis URL"));
    let rate = find(&all, "routes[0].rate_limit.rate");
    assert_eq!(rate.line, 7);
    assert!(rate.message.contains("unknown period"), "{rate:?}");
    assert!(find(&all, "routes[0].rate_limit.key")
        .message
        .contains("expected client_ip, route, consumer or header:NAME"));
    assert_eq!(find(&all, "routes[1].rate_limit.burst").line, 10);
    assert!(find(&all, "routes[1].rate_limit.on_redis_error")
        .message
        .contains("expected allow or deny"));
    assert_eq!(all.len(), 5, "{all:#?}");
}

#[test]
fn composition_errors_name_their_field() {
    let text = "\
upstreams:
  - { name: svc, instances: [\"127.0.0.1:3000\"] }
routes:
  - name: full
    match: { template: \"/books/{id}\", methods: [GET, POST] }
    upstream: svc
    compose:
      on_error: sometimes
      calls:
        - { name: book, upstream: svc, path: \"/books/${path.isbn}\" }
        - { name: errors, upstream: nowhere, path: /x }
        - { name: book, upstream: svc, path: \"/r/${later.id}\", timeout: soon }
        - { name: later, upstream: svc, path: reviews }
";
    let all = errors(text);
    assert!(find(&all, "routes[0].upstream")
        .message
        .contains("does not apply to a `compose` route"));
    assert!(find(&all, "routes[0].match.methods[1]")
        .message
        .contains("answers GET and HEAD, not POST"));
    assert!(find(&all, "routes[0].compose.on_error")
        .message
        .contains("not `fail` or `partial`"));
    let capture = find(&all, "routes[0].compose.calls[0].path");
    assert_eq!(capture.line, 10);
    assert!(capture.message.contains("captures no `isbn`"), "{capture:?}");
    assert!(find(&all, "routes[0].compose.calls[1].name")
        .message
        .contains("none of errors, path, query"));
    assert!(find(&all, "routes[0].compose.calls[1].upstream")
        .message
        .contains("unknown upstream `nowhere`"));
    assert!(find(&all, "routes[0].compose.calls[2].name")
        .message
        .contains("duplicate call name `book`"));
    assert!(find(&all, "routes[0].compose.calls[2].path")
        .message
        .contains("`later` is not an earlier call"));
    assert!(find(&all, "routes[0].compose.calls[2].timeout")
        .message
        .contains("soon"));
    assert!(find(&all, "routes[0].compose.calls[3].path")
        .message
        .contains("must start with `/`"));
    assert_eq!(all.len(), 10, "{all:#?}");
}

#[test]
fn consumer_and_auth_errors_name_their_field() {
    let key = lookout_tests::keys::ACME_DIGEST;
    let text = format!(
        "\
consumers:
  - {{ name: acme, groups: [partners], api_keys: [\"{key}\", \"acme-key\"] }}
  - {{ name: acme, api_keys: [\"{key}\"] }}
upstreams:
  - {{ name: svc, instances: [\"127.0.0.1:3000\"] }}
routes:
  - name: a
    upstream: svc
    auth: {{ api_key: {{ header: \"bad header\" }}, consumers: [initech], groups: [partners, vips] }}
"
    );
    let all = errors(&text);
    let plain = find(&all, "consumers[0].api_keys[1]");
    assert_eq!(plain.line, 2);
    assert!(plain.message.contains("`sha256:<64 hex digits>`"), "{plain:?}");
    assert!(find(&all, "consumers[1].name")
        .message
        .contains("names another consumer"));
    assert!(find(&all, "consumers[1].api_keys[0]")
        .message
        .contains("another consumer's"));
    assert!(find(&all, "routes[0].auth.api_key.header")
        .message
        .contains("not a valid header name"));
    assert!(find(&all, "routes[0].auth.consumers[0]")
        .message
        .contains("no consumer answers to `initech`"));
    assert_eq!(find(&all, "routes[0].auth.groups[1]").line, 9);
    assert_eq!(all.len(), 6, "{all:#?}");
}

#[test]
fn jwt_and_edge_errors_name_their_field() {
    let text = "\
limits: { max_uri_length: huge, send_timeout: never }
trusted_proxies: [10.0.0.0/8, not-a-network]
jwt_providers:
  - { name: mixed, algorithms: [HS256, RS256], secret_env: NOPE }
  - { name: none, algorithms: [none], key_file: missing.pem }
  - { name: both, algorithms: [RS256], key_file: a.pem, jwks_url: \"http://127.0.0.1:1/jwks\" }
upstreams:
  - { name: svc, instances: [\"127.0.0.1:3000\"] }
routes:
  - name: a
    upstream: svc
    auth: { jwt: nobody }
    security:
      ip_filter: { allow: [300.1.1.1] }
      cors: { origins: [app.example.com] }
      attack_filter: { mode: shout }
  - name: b
    upstream: svc
    auth: { scopes: [read] }
";
    let all = errors(text);
    assert!(find(&all, "limits.max_uri_length")
        .message
        .contains("invalid size"));
    assert!(find(&all, "limits.send_timeout")
        .message
        .contains("invalid duration `never`"));
    assert_eq!(find(&all, "trusted_proxies[1]").line, 2);
    assert!(find(&all, "jwt_providers[0].algorithms")
        .message
        .contains("one family"));
    assert!(find(&all, "jwt_providers[1].algorithms[0]")
        .message
        .contains("never `none`"));
    assert!(find(&all, "jwt_providers[2]").message.contains("exactly one of"));
    assert!(find(&all, "routes[0].auth.jwt").message.contains("`nobody`"));
    assert_eq!(find(&all, "routes[0].security.ip_filter.allow[0]").line, 14);
    assert!(find(&all, "routes[0].security.cors.origins[0]")
        .message
        .contains("not an origin"));
    assert!(find(&all, "routes[0].security.attack_filter.mode")
        .message
        .contains("`shout`"));
    assert!(find(&all, "routes[1].auth.scopes")
        .message
        .contains("name a provider"));
}

#[test]
fn tls_errors_name_their_field() {
    let pki = lookout_tests::tls::TestPki::new();
    pki.issue("api", &["api.test"]);
    pki.issue("other", &["other.test", "api.test"]);
    pki.issue("unnamed", &["127.0.0.1"]);
    let folder = pki.dir.path();
    std::fs::write(folder.join("empty.pem"), "").expect("write");
    let text = "\
tls:
  certificates:
    - { cert: api.pem, key: other.key }
    - { cert: other.pem, key: other.key }
    - { cert: unnamed.pem, key: unnamed.key }
    - { cert: missing.pem, key: api.key }
  min_version: \"1.1\"
  redirect_port: 0
jwt_providers:
  - { name: idp, algorithms: [RS256], jwks_url: \"http://127.0.0.1:1/jwks\", jwks_ca: ca.pem }
upstreams:
  - { name: mixed, instances: [\"https://127.0.0.1:1\", \"http://127.0.0.1:2\"] }
  - { name: half, instances: [\"127.0.0.1:3\"], tls: { cert: api.pem } }
  - { name: noca, instances: [\"127.0.0.1:4\"], tls: { ca: empty.pem } }
routes:
  - { name: a, upstream: mixed }
";
    let file = folder.join("gw.yaml");
    std::fs::write(&file, text).expect("write config");
    let all = load_file(&file).expect_err("rejected").0;
    let mismatch = find(&all, "tls.certificates[0].key");
    assert!(mismatch.message.contains("does not match"), "{mismatch:?}");
    assert_eq!(mismatch.line, 3);
    assert!(find(&all, "tls.certificates[2].cert")
        .message
        .contains("names no host"));
    assert!(find(&all, "tls.certificates[3].cert")
        .message
        .contains("cannot read"));
    assert!(find(&all, "tls.min_version").message.contains("`1.1`"));
    assert!(find(&all, "tls.redirect_port").message.contains("1-65535"));
    assert!(find(&all, "jwt_providers[0].jwks_ca")
        .message
        .contains("https://"));
    assert_eq!(find(&all, "upstreams[0].instances[1]").line, 12);
    assert!(find(&all, "upstreams[1].tls")
        .message
        .contains("both `cert` and `key`"));
    assert!(find(&all, "upstreams[2].tls.ca")
        .message
        .contains("holds no PEM certificate"));

    // Two certificates claiming one name (checked once each file is good).
    let text = "tls:\n  certificates:\n    - { cert: api.pem, key: api.key }\n    - { cert: other.pem, key: other.key }\n";
    std::fs::write(&file, text).expect("write config");
    let all = load_file(&file).expect_err("rejected").0;
    assert!(find(&all, "tls.certificates[1].cert")
        .message
        .contains("`api.test` is also a name of certificates[0]"));

    // Client certificates: a mode that is not one, a CA file that holds none, or none at all.
    for (client_auth, field, says) in [
        (
            "{ ca: ca.pem, mode: sometimes }",
            "tls.client_auth.mode",
            "`sometimes` is not a mode",
        ),
        (
            "{ ca: empty.pem }",
            "tls.client_auth.ca",
            "holds no PEM certificate",
        ),
        ("{ ca: missing.pem }", "tls.client_auth.ca", "cannot read"),
        ("{ mode: optional }", "tls.client_auth", "missing field `ca`"),
        (
            "{ ca: ca.pem, crls: [ca.pem] }",
            "tls.client_auth.crls[0]",
            "holds no PEM certificate revocation list",
        ),
        (
            "{ ca: ca.pem, crls: [gone.crl] }",
            "tls.client_auth.crls[0]",
            "cannot read",
        ),
    ] {
        let text = format!(
            "tls:\n  certificates:\n    - {{ cert: api.pem, key: api.key }}\n  client_auth: {client_auth}\n"
        );
        std::fs::write(&file, text).expect("write config");
        let all = load_file(&file).expect_err("rejected").0;
        let error = all
            .iter()
            .find(|e| e.message.contains(says))
            .unwrap_or_else(|| panic!("{client_auth}: {all:#?}"));
        assert!(error.field.starts_with(field) && error.line == 4, "{error:?}");
    }

    let redirect_only = errors("listeners: { http_redirect: 127.0.0.1:8080 }\n");
    assert!(find(&redirect_only, "listeners.http_redirect")
        .message
        .contains("needs `tls:`"));
}

#[test]
fn health_checks_name_one_probe_their_protocol_can_send() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"], health_check: { grpc_service: books.v1.Books } }
  - { name: b, instances: [\"127.0.0.1:2\"], protocol: http2, health_check: { path: /, grpc_service: \"\" } }
  - { name: c, instances: [\"127.0.0.1:3\"], health_check: { interval: 1s } }
  - { name: d, instances: [\"127.0.0.1:4\"], protocol: http2, health_check: { grpc_service: \"\" } }
  - { name: e, instances: [\"127.0.0.1:5\"], health_check: { path: /, expected_statuses: [204, 6xx, 399-300, 2xx] } }
  - { name: f, instances: [\"127.0.0.1:6\"], protocol: http2, health_check: { grpc_service: \"\", expected_statuses: [200] } }
  - { name: g, instances: [\"127.0.0.1:7\"], health_check: { path: /, expected_statuses: [] } }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].health_check.grpc_service", 2, "needs HTTP/2"),
            ("upstreams[1].health_check.grpc_service", 3, "not both"),
            ("upstreams[2].health_check", 4, "needs `path`"),
            (
                "upstreams[4].health_check.expected_statuses[1]",
                6,
                "`6xx` is not a status",
            ),
            ("upstreams[4].health_check.expected_statuses[2]", 6, "`399-300`"),
            (
                "upstreams[5].health_check.expected_statuses",
                7,
                "for `path` checks",
            ),
            (
                "upstreams[6].health_check.expected_statuses",
                8,
                "at least one status",
            ),
        ],
    );
}

#[test]
fn compression_settings_name_their_field() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"] }
routes:
  - { name: one, upstream: a, compress: { min_size: lots, types: [text/html, \"nonsense\", \"text/*+\"] } }
  - { name: two, upstream: a, compress: { types: [], max_in_flight: 0 } }
";
    only_these_errors(
        text,
        &[
            ("routes[0].compress.min_size", 4, "lots"),
            ("routes[0].compress.types[1]", 4, "`nonsense` is not a media type"),
            ("routes[0].compress.types[2]", 4, "`text/*+` is not a media type"),
            ("routes[1].compress.types", 5, "lists no media type"),
            ("routes[1].compress.max_in_flight", 5, "at least 1"),
        ],
    );
    let unknown = errors(&text.replace("types: []", "level: 9"));
    assert!(
        unknown.iter().any(|e| e.message.contains("level")),
        "{unknown:#?}"
    );
}

#[test]
fn outlier_rate_settings_name_their_field() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"], outlier: { max_ejected_percent: 120, failure_percentage: { threshold: 150 } } }
  - { name: b, instances: [\"127.0.0.1:2\"], outlier: { success_rate: { stdev_factor: 0, min_requests: 0, min_instances: 0 } } }
  - { name: c, instances: [\"127.0.0.1:3\"], outlier: { interval: 5s } }
  - { name: d, instances: [\"127.0.0.1:4\"], outlier: { interval: 0s, failure_percentage: { threshold: 30, min_instances: 2 } } }
  - { name: e, instances: [\"127.0.0.1:5\"], outlier: { failure_percentage: { threshold: 0 } } }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].outlier.max_ejected_percent", 2, "between 0 and 100"),
            (
                "upstreams[0].outlier.failure_percentage.threshold",
                2,
                "between 0 and 100",
            ),
            (
                "upstreams[1].outlier.success_rate.stdev_factor",
                3,
                "greater than 0",
            ),
            ("upstreams[1].outlier.success_rate.min_requests", 3, "at least 1"),
            ("upstreams[1].outlier.success_rate.min_instances", 3, "at least 1"),
            (
                "upstreams[2].outlier.interval",
                4,
                "set `failure_percentage` or `success_rate`",
            ),
            ("upstreams[3].outlier.interval", 5, "greater than zero"),
            (
                "upstreams[4].outlier.failure_percentage.threshold",
                6,
                "greater than 0",
            ),
        ],
    );
    let missing = errors(
        "upstreams:\n  - { name: a, instances: [\"127.0.0.1:1\"], outlier: { failure_percentage: { min_requests: 5 } } }\nroutes:\n  - { name: all, upstream: a }\n",
    );
    assert!(missing[0].message.contains("threshold"), "{missing:?}");
}

#[test]
fn max_concurrent_streams_is_a_positive_count_for_http2_upstreams_and_max_in_flight_one_for_any() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"], max_concurrent_streams: 100 }
  - { name: b, instances: [\"127.0.0.1:2\"], protocol: http2, max_concurrent_streams: 0 }
  - { name: c, instances: [\"127.0.0.1:3\"], protocol: http2, max_concurrent_streams: 100, max_in_flight: 0 }
  - { name: d, instances: [\"127.0.0.1:4\"], max_in_flight: 64 }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].max_concurrent_streams", 2, "protocol: http2"),
            ("upstreams[1].max_concurrent_streams", 3, "at least 1"),
            ("upstreams[2].max_in_flight", 4, "at least 1"),
        ],
    );
}

#[test]
fn trace_settings_name_their_field() {
    let text = "\
traces:
  endpoint: http://127.0.0.1:4317
  protocol: zipkin
  sample_ratio: 1.5
  always_sample_slower_than: a while
upstreams:
  - { name: a, instances: [\"127.0.0.1:3000\"] }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("traces.protocol", 3, "unknown protocol `zipkin`"),
            ("traces.sample_ratio", 4, "between 0 and 1"),
            (
                "traces.always_sample_slower_than",
                5,
                "invalid duration `a while`",
            ),
        ],
    );
}

#[test]
fn metrics_push_settings_name_their_field() {
    let text = "\
metrics:
  otlp:
    endpoint: https://collector.example:4317
    interval: 500ms
    tls: { ca: no-such-ca.pem }
    compression: lz4
traces:
  endpoint: collector:4317
  protocol: zipkin
access_log:
  otlp:
    endpoint: http://collector.example:4318
    headers: { \"bad name\": x, x-api-key: \"café\" }
upstreams:
  - { name: a, instances: [\"127.0.0.1:3000\"] }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("metrics.otlp.interval", 4, "at least 1s"),
            ("metrics.otlp.tls.ca", 5, "cannot read"),
            (
                "metrics.otlp.compression",
                6,
                "unknown compression `lz4`: expected gzip, zstd or none",
            ),
            ("traces.endpoint", 8, "not an http:// or https:// URL"),
            ("traces.protocol", 9, "unknown protocol `zipkin`"),
            (
                "access_log.otlp.headers.bad name",
                13,
                "`bad name` is not a header name",
            ),
            ("access_log.otlp.headers.x-api-key", 13, "visible ASCII"),
        ],
    );
}

#[test]
fn otlp_tls_settings_name_their_field() {
    let text = "\
traces:
  endpoint: https://collector.example:4317
  tls: { cert: client.pem }
metrics:
  otlp:
    endpoint: https://collector.example:4317
    tls: { server_name: \"not a name\" }
access_log:
  otlp:
    endpoint: http://collector.example:4318
    tls: { ca: ca.pem }
upstreams:
  - { name: a, instances: [\"127.0.0.1:3000\"] }
routes:
  - { name: all, upstream: a }
";
    only_these_errors(
        text,
        &[
            ("traces.tls", 3, "needs both `cert` and `key`"),
            (
                "metrics.otlp.tls.server_name",
                7,
                "`not a name` is not a server name",
            ),
            (
                "access_log.otlp.tls",
                11,
                "TLS settings need an https:// endpoint",
            ),
        ],
    );
}

#[test]
fn store_limits_name_their_field_and_spilling_can_be_turned_off() {
    let with = |analytics: &str| {
        format!(
            "analytics:\n{analytics}upstreams:\n  - {{ name: a, instances: [\"127.0.0.1:3000\"] }}\n\
             routes:\n  - {{ name: all, upstream: a }}\n"
        )
    };
    let all = errors(&with("  memory_limit: plenty\n  max_spill: 0GB\n"));
    let memory = find(&all, "analytics.memory_limit");
    assert_eq!(memory.line, 2);
    assert!(memory.message.contains("invalid size `plenty`"), "{memory:?}");
    let spill = find(&all, "analytics.max_spill");
    assert_eq!(spill.line, 3);
    assert!(spill.message.contains("greater than zero"), "{spill:?}");
    assert_eq!(all.len(), 2, "{all:#?}");

    let spill_of = |analytics: &str| {
        let config = load_str("gw.yaml", &with(analytics)).expect("valid");
        config.analytics.expect("the store is on").max_spill
    };
    assert_eq!(spill_of("  max_spill: off\n"), None);
    assert_eq!(spill_of("  max_spill: 512MiB\n"), Some(512 << 20));
    assert_eq!(spill_of("  threads: 1\n"), Some(1 << 30), "1 GiB by default");

    // A store in memory, which cannot spill, keeps at most half of memory_limit.
    let kept_of = |analytics: &str| {
        let config = load_str("gw.yaml", &with(analytics)).expect("valid");
        config.analytics.expect("the store is on").kept().max_bytes
    };
    assert_eq!(kept_of("  store: memory\n"), Some(500_000_000));
    assert_eq!(
        kept_of("  store: memory\n  memory_limit: 200MB\n"),
        Some(100_000_000)
    );
    assert_eq!(
        kept_of("  store: memory\n  retention: { max_size: 50MB }\n"),
        Some(50_000_000)
    );
    assert_eq!(
        kept_of("  store: data.duckdb\n"),
        None,
        "a file's size is unbounded by default"
    );
    let all = errors(&with("  store: memory\n  retention: { max_size: 2GB }\n"));
    let kept = find(&all, "analytics.retention.max_size");
    assert_eq!(kept.line, 3);
    assert!(kept.message.contains("at most half of it"), "{kept:?}");
}

/// `read_timeout` takes a duration or `off` (for streams that may pause longer), nothing else.
#[test]
fn an_upstreams_read_timeout_is_a_duration_or_off() {
    let config = |value: &str| {
        format!(
            "upstreams: [{{ name: a, instances: [\"127.0.0.1:3000\"], read_timeout: {value} }}]\n\
             routes: [{{ name: a, upstream: a }}]\n"
        )
    };
    for fine in ["off", "5m", "250ms"] {
        assert!(load_str("gw.yaml", &config(fine)).is_ok(), "{fine}");
    }
    let all = errors(&config("never"));
    let error = find(&all, "upstreams[0].read_timeout");
    assert!(error.message.contains("invalid duration `never`"), "{error:?}");
    assert_eq!(find(&errors(&config("0s")), "upstreams[0].read_timeout").line, 1);
}

#[test]
fn a_routes_cache_coalesce_is_a_duration_or_off_and_stale_if_error_a_duration() {
    let config = |field: &str, value: &str| {
        format!(
            "upstreams: [{{ name: a, instances: [\"127.0.0.1:3000\"] }}]\n\
             routes: [{{ name: a, upstream: a, cache: {{ {field}: {value} }} }}]\n"
        )
    };
    for fine in ["off", "2s", "500ms"] {
        assert!(load_str("gw.yaml", &config("coalesce", fine)).is_ok(), "{fine}");
    }
    assert!(load_str("gw.yaml", &config("stale_if_error", "10m")).is_ok());
    for field in ["coalesce", "stale_if_error"] {
        let all = errors(&config(field, "soon"));
        let error = find(&all, &format!("routes[0].cache.{field}"));
        assert!(error.message.contains("invalid duration `soon`"), "{error:?}");
        let zero = errors(&config(field, "0s"));
        assert_eq!(find(&zero, &format!("routes[0].cache.{field}")).line, 2);
    }
    assert!(
        !errors(&config("stale_if_error", "off")).is_empty(),
        "it is off by default, not `off`"
    );
}

#[test]
fn discovery_settings_name_their_field() {
    let text = "\
dns: { nameservers: [\"10.0.0.1:53\", \"resolver.local\"], timeout: soon }
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"], discover: { dns: \"a.svc:80\" } }
  - { name: b }
  - { name: c, discover: { dns: \"10.0.0.5:8080\" } }
  - { name: d, discover: { dns: \"d.svc\", refresh: 0s } }
";
    only_these_errors(
        text,
        &[
            ("dns.nameservers[1]", 1, "`resolver.local` is not an IP address"),
            ("dns.timeout", 1, "soon"),
            ("upstreams[0].discover", 3, "not both"),
            ("upstreams[1].instances", 4, "or `discover:` to find them in DNS"),
            (
                "upstreams[2].discover.dns",
                5,
                "needs no discovery: list it in `instances`",
            ),
            ("upstreams[3].discover.dns", 6, "needs a port"),
            ("upstreams[3].discover.refresh", 6, "greater than zero"),
        ],
    );
    let srv = errors(
        "upstreams:
  - { name: f, discover: { dns: \"f.svc:80\", srv: _f._tcp.svc } }
  - { name: g, discover: { srv: \"g.svc:80\" } }
  - { name: h, discover: { refresh: 5s } }
",
    );
    for (field, says) in [
        ("upstreams[0].discover", "not both"),
        ("upstreams[1].discover.srv", "`g.svc:80` is not a DNS name"),
        (
            "upstreams[2].discover",
            "`dns: host:port` (addresses) or `srv: name`",
        ),
    ] {
        let error = find(&srv, field);
        assert!(error.message.contains(says), "{error:?}");
    }
    assert_eq!(find(&srv, "upstreams[1].discover.srv").line, 3);
    assert_eq!(srv.len(), 3, "{srv:#?}");
    let none =
        errors("dns: { nameservers: [] }\nupstreams: [{ name: e, discover: { dns: \"e.svc:80\" } }]\n");
    let error = find(&none, "dns.nameservers");
    assert!(error.message.contains("at least one nameserver"), "{error:?}");
}

#[test]
fn backups_name_their_field() {
    let text = "\
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"], backups: [\"127.0.0.1:2\", \"127.0.0.1:1\", \"nowhere\"] }
  - { name: b, discover: { dns: \"b.svc:80\" }, backups: [\"127.0.0.1:3\"] }
  - { name: c, backups: [\"127.0.0.1:4\"] }
  - { name: d, instances: [\"https://127.0.0.1:5\"], backups: [\"http://127.0.0.1:6\"] }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].backups[1]", 2, "`127.0.0.1:1` is listed already"),
            ("upstreams[0].backups[2]", 2, "needs a port"),
            (
                "upstreams[1].backups",
                3,
                "its SRV name's records of later priorities",
            ),
            ("upstreams[2].instances", 4, "needs at least one instance"),
            ("upstreams[3].backups[0]", 5, "so no instance may be http://"),
        ],
    );
}

#[test]
fn weights_and_slow_start_name_their_field() {
    let text = "\
upstreams:
  - name: a
    instances:
      - { address: \"127.0.0.1:1\", weight: 0 }
      - { address: \"127.0.0.1:2\", weight: 257 }
      - \"127.0.0.1:3\"
    backups: [{ address: \"nowhere\", weight: 2 }]
    slow_start: 0s
";
    let all = errors(text);
    each_names_its_field(
        &all,
        &[
            (
                "upstreams[0].instances[0].weight",
                4,
                "`0` is not a weight (1 to 256)",
            ),
            (
                "upstreams[0].instances[1].weight",
                5,
                "`257` is not a weight (1 to 256)",
            ),
            ("upstreams[0].backups[0]", 7, "needs a port"),
            ("upstreams[0].slow_start", 8, "greater than zero"),
        ],
    );
    assert_eq!(all.len(), 4, "{all:#?}");
    for (entry, says) in [
        ("{ weight: 2 }", "field `address`"),
        ("{ address: \"127.0.0.1:1\", share: 2 }", "field `share`"),
        ("{ address: \"127.0.0.1:1\", weight: heavy }", "invalid digit"),
    ] {
        let all = errors(&format!("upstreams:\n  - name: a\n    instances: [{entry}]\n"));
        assert!(
            all.iter().any(|e| e.message.contains(says) && e.line == 3),
            "{entry}: {all:#?}"
        );
    }
}

#[test]
fn the_top_level_compress_names_its_own_fields() {
    let text = "\
compress: { min_size: lots, types: [], max_in_flight: 0, enabled: maybe, levels: { gzip: 10, br: 12, zstd: 0 } }
upstreams:
  - { name: a, instances: [\"127.0.0.1:1\"] }
";
    let all = errors(text);
    assert!(
        all.iter()
            .any(|e| e.message.contains("maybe") || e.message.contains("bool")),
        "{all:#?}"
    );
    let valid = errors(&text.replace(", enabled: maybe", ""));
    for (field, says) in [
        ("compress.min_size", "lots"),
        ("compress.types", "lists no media type"),
        ("compress.max_in_flight", "at least 1"),
        ("compress.levels.gzip", "`10` is not a gzip level (1 to 9)"),
        ("compress.levels.br", "`12` is not a br level (0 to 11)"),
        ("compress.levels.zstd", "`0` is not a zstd level (1 to 19)"),
    ] {
        let error = find(&valid, field);
        assert!(error.message.contains(says), "{error:?}");
    }
    assert_eq!(valid.len(), 6, "{valid:#?}");
}

#[test]
fn objectives_name_their_field() {
    let text = "\
upstreams: [{ name: a, instances: [\"127.0.0.1:1\"] }]
routes:
  - { name: full, upstream: a, slo: { objective: 100 } }
  - { name: none, upstream: a, slo: { objective: 0 } }
  - { name: short, upstream: a, slo: { objective: 99.9, period: 6h } }
  - { name: instant, upstream: a, slo: { objective: 99.9, latency: 0s } }
  - { name: vague, upstream: a, slo: { objective: 99.9, latency: soon } }
  - { name: floorless, upstream: a, slo: { objective: 99.9, alert_min_missed: 0 } }
";
    let all = errors(text);
    each_names_its_field(
        &all,
        &[
            ("routes[0].slo.objective", 3, "100 leaves no error budget"),
            ("routes[1].slo.objective", 4, "above 0 and below 100"),
            ("routes[2].slo.period", 5, "at least 1d"),
            ("routes[3].slo.latency", 6, "greater than zero"),
            ("routes[4].slo.latency", 7, "invalid duration `soon`"),
            ("routes[5].slo.alert_min_missed", 8, "at least 1"),
        ],
    );
    assert_eq!(all.len(), 6, "{all:#?}");
    for (slo, says) in [
        ("{ latency: 300ms }", "field `objective`"),
        ("{ objective: 99.9, target: 1 }", "field `target`"),
        ("{ objective: high }", "invalid float literal"),
    ] {
        let all = errors(&format!(
            "upstreams: [{{ name: a, instances: [\"127.0.0.1:1\"] }}]\nroutes:\n  - {{ name: r, upstream: a, slo: {slo} }}\n"
        ));
        assert!(
            all.iter().any(|e| e.message.contains(says) && e.line == 3),
            "{slo}: {all:#?}"
        );
    }
}

#[test]
fn overprovisioning_and_the_panic_threshold_name_their_field() {
    let text = "\
upstreams:
  - { name: low, instances: [\"127.0.0.1:1\"], backups: [\"127.0.0.1:2\"], overprovisioning: 0.5 }
  - { name: alone, instances: [\"127.0.0.1:3\"], overprovisioning: 1.4 }
  - { name: fine, instances: [\"127.0.0.1:4\"], backups: [\"127.0.0.1:5\"], overprovisioning: 1.4, panic_threshold_percent: 50 }
  - { name: found, discover: { dns: \"localhost:80\" }, overprovisioning: 2 }
  - { name: over, instances: [\"127.0.0.1:6\"], panic_threshold_percent: 120 }
routes:
  - { name: r, upstream: fine }
";
    only_these_errors(
        text,
        &[
            ("upstreams[0].overprovisioning", 2, "must be from 1 to 100"),
            ("upstreams[1].overprovisioning", 3, "this upstream has none"),
            (
                "upstreams[4].panic_threshold_percent",
                6,
                "must be between 0 and 100",
            ),
        ],
    );
}

#[test]
fn client_certificate_consumers_name_their_field() {
    let text = "\
consumers:
  - { name: a, client_certs: [\"CN=a\"] }
  - { name: b, client_certs: [\"CN=a\", \"\"] }
upstreams: [{ name: u, instances: [\"127.0.0.1:1\"] }]
routes:
  - { name: r, upstream: u, auth: { client_cert: true } }
";
    only_these_errors(
        text,
        &[
            ("consumers[1].client_certs[0]", 3, "another consumer's"),
            ("consumers[1].client_certs[1]", 3, "is empty"),
            (
                "routes[0].auth.client_cert",
                6,
                "`tls.client_auth`, which this config has not",
            ),
        ],
    );
}
