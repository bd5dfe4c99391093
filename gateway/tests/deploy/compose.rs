//! `deploy/compose.yaml` fits its files together: what it mounts exists, Prometheus scrapes the
//! gateway's admin port with the gateway's token, Grafana's provisioning points where the
//! dashboards are mounted, the gateway's upstreams are compose services. (Running it needs a
//! Docker engine, which CI does not have.)

use super::{read, repo, yaml};
use serde_json::Value;

fn compose() -> Value {
    yaml(&read("deploy/compose.yaml"))
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}"))
}

/// (source, target) of a service's bind mounts, sources relative to deploy/.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .filter(|v| v.starts_with('.'))
        .map(|v| {
            let mut parts = v.split(':');
            let source = parts.next().expect("source").to_owned();
            (source, parts.next().expect("target").to_owned())
        })
        .collect()
}

#[test]
fn every_mounted_file_exists_and_every_image_is_pinned() {
    let compose = compose();
    for (name, service) in compose["services"].as_object().expect("services") {
        for (source, _) in bind_mounts(service) {
            let path = repo().join("deploy").join(&source);
            assert!(path.exists(), "{name} mounts {source}, which does not exist");
        }
        let image = text(&service["image"]);
        let tag = image.rsplit_once(':').map(|(_, tag)| tag);
        assert!(
            tag.is_some_and(|t| t != "latest"),
            "{name}: image {image} is not pinned"
        );
    }
}

#[test]
fn prometheus_scrapes_the_gateway_admin_listener_with_its_token() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let gateway = &services["gateway"];
    let token = text(&gateway["environment"]["LOOKOUT_ADMIN_TOKEN"]);
    let prometheus = yaml(&read("deploy/prometheus/prometheus.yml"));
    let job = &prometheus["scrape_configs"][0];
    let token_file = text(&job["authorization"]["credentials_file"]);
    assert_eq!(read(format!("deploy/prometheus/{token_file}")).trim(), token);
    let config = yaml(&read("deploy/k8s/base/lookout.yaml"));
    let admin_port = text(&config["listeners"]["admin"])
        .rsplit_once(':')
        .expect("port")
        .1
        .to_owned();
    for target in job["static_configs"][0]["targets"].as_array().expect("targets") {
        assert_eq!(text(target), format!("gateway:{admin_port}"));
    }
    let mounted = bind_mounts(&services["prometheus"]);
    assert!(mounted
        .iter()
        .any(|(source, target)| source == "./prometheus" && target == "/etc/prometheus"));
}

#[test]
fn the_gateway_runs_the_deploy_config_against_compose_services() {
    let compose = compose();
    let services = compose["services"].as_object().expect("services");
    let mounts = bind_mounts(&services["gateway"]);
    assert!(mounts.contains(&(
        "./k8s/base/lookout.yaml".into(),
        "/etc/lookout/lookout.yaml".into()
    )));
    let config = yaml(&read("deploy/k8s/base/lookout.yaml"));
    for upstream in config["upstreams"].as_array().expect("upstreams") {
        // Listed instances, or the name whose addresses are discovered (each replica's).
        let addresses = match upstream["instances"].as_array() {
            Some(instances) => instances.clone(),
            None => vec![upstream["discover"]["dns"].clone()],
        };
        for instance in &addresses {
            let host = text(instance).split(':').next().expect("host");
            assert!(
                services.contains_key(host),
                "upstream instance {host} is not a compose service"
            );
        }
    }
    let traces = text(&config["traces"]["endpoint"]).trim_start_matches("http://");
    assert!(services.contains_key(traces.split(':').next().expect("host")));
}

#[test]
fn grafana_is_provisioned_with_the_dashboards_and_prometheus() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let mounts = bind_mounts(grafana);
    let dashboards_target = mounts
        .iter()
        .find(|(source, _)| source == "../grafana/dashboards")
        .map(|(_, target)| target.clone())
        .expect("the dashboards are mounted");
    assert!(mounts
        .iter()
        .any(|(s, t)| s == "../grafana/provisioning" && t == "/etc/grafana/provisioning"));
    let provider = yaml(&read("grafana/provisioning/dashboards/lookout.yaml"));
    assert_eq!(
        text(&provider["providers"][0]["options"]["path"]),
        dashboards_target
    );
    let datasources = yaml(&read("grafana/provisioning/datasources/prometheus.yaml"));
    let datasources = datasources["datasources"].as_array().expect("datasources");
    let uids: Vec<&str> = datasources.iter().map(|d| text(&d["uid"])).collect();
    assert_eq!(uids, ["prometheus", "jaeger"]);
    for datasource in datasources {
        let url = text(&datasource["url"]);
        let host = url.trim_start_matches("http://").split(':').next().expect("host");
        assert!(
            compose["services"][host].is_object(),
            "the datasource's host {host} is a compose service"
        );
    }
    // Exemplars' trace ids open their traces in the Jaeger datasource.
    let destination = &datasources[0]["jsonData"]["exemplarTraceIdDestinations"][0];
    assert_eq!(
        (text(&destination["name"]), text(&destination["datasourceUid"])),
        ("trace_id", "jaeger")
    );
    let home = text(&grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]);
    let file = home
        .strip_prefix(&format!("{dashboards_target}/"))
        .expect("home is a mounted dashboard");
    assert!(repo().join("grafana/dashboards").join(file).exists());
}
