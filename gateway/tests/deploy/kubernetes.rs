//! `deploy/k8s`: every kustomization renders (kustomize), every object validates against the
//! Kubernetes schemas of the oldest and newest versions `kubernetes-validate` ships, and the
//! objects fit together: Services select pods and name their ports, the NetworkPolicies let
//! clients reach the gateway only, the gateway's config names Services that exist.

use super::{repo, succeed, tool, yaml, yaml_documents};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

const REQUIRED: &str = "LOOKOUT_REQUIRE_DEPLOY_TOOLS";
const KUSTOMIZATIONS: [&str; 3] = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/local",
    "deploy/k8s/monitoring",
];
/// The oldest and the newest schemas kubernetes-validate 1.37 ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];
/// Custom resources, whose schemas come with their operator, not with Kubernetes.
const CUSTOM_KINDS: [&str; 1] = ["ServiceMonitor"];

fn render(kustomization: &str) -> Option<String> {
    let kubectl = tool("kubectl", REQUIRED)?;
    let output = succeed(
        Command::new(kubectl)
            .arg("kustomize")
            .arg(repo().join(kustomization)),
    );
    Some(String::from_utf8(output.stdout).expect("utf-8"))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

/// Workloads' pod templates: (workload name, pod labels, pod spec).
fn pod_templates(objects: &[Value]) -> Vec<(String, &Value, &Value)> {
    objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .map(|o| {
            let template = &o["spec"]["template"];
            (
                text(&o["metadata"]["name"]),
                &template["metadata"]["labels"],
                &template["spec"],
            )
        })
        .collect()
}

fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

fn container_port_names(pod: &Value) -> BTreeSet<String> {
    pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .map(|p| text(&p["name"]))
        .collect()
}

/// PyPI's kubernetes-validate, run as a module (pip may put its script off PATH).
fn validator_installed() -> bool {
    let installed = Command::new("python3")
        .args(["-c", "import kubernetes_validate"])
        .status()
        .is_ok_and(|status| status.success());
    if !installed {
        assert!(
            std::env::var_os(REQUIRED).is_none(),
            "kubernetes-validate is required ({REQUIRED} is set) but python3 cannot import it"
        );
        eprintln!("skipped: kubernetes-validate is not installed");
    }
    installed
}

#[test]
fn every_kustomization_renders_and_validates_against_the_kubernetes_schemas() {
    if !validator_installed() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    for kustomization in KUSTOMIZATIONS {
        let Some(rendered) = render(kustomization) else {
            return;
        };
        let file = scratch.path().join(kustomization.replace('/', "-") + ".yaml");
        std::fs::write(&file, &rendered).expect("write");
        for version in KUBERNETES_VERSIONS {
            let output = succeed(
                Command::new("python3")
                    .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", version])
                    .arg(&file),
            );
            // Only custom resources may lack a schema; anything else unknown is a mistake.
            let report = String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr);
            for line in report.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    line.contains("Couldn't find schema") && CUSTOM_KINDS.iter().any(|k| line.contains(k)),
                    "{kustomization} against {version}: {line}"
                );
            }
        }
    }
}

#[test]
fn services_select_pods_and_name_ports_the_pods_have() {
    let Some(rendered) = render("deploy/k8s/overlays/local") else {
        return;
    };
    let objects = yaml_documents(&rendered);
    let pods = pod_templates(&objects);
    for service in of_kind(&objects, "Service") {
        let name = text(&service["metadata"]["name"]);
        let selected: Vec<_> = pods
            .iter()
            .filter(|(_, labels, _)| matches(&service["spec"]["selector"], labels))
            .collect();
        assert!(!selected.is_empty(), "Service {name} selects no pods");
        for port in service["spec"]["ports"].as_array().expect("ports") {
            let target = text(&port["targetPort"]);
            for (workload, _, pod) in &selected {
                assert!(
                    container_port_names(pod).contains(&target),
                    "Service {name} targets port {target}, which {workload}'s pods do not name"
                );
            }
        }
    }
    let load_balancers: Vec<_> = of_kind(&objects, "Service")
        .into_iter()
        .filter(|s| s["spec"]["type"] == "LoadBalancer")
        .map(|s| text(&s["metadata"]["name"]))
        .collect();
    assert_eq!(load_balancers, ["lookout-gateway"], "only the gateway is exposed");
}

#[test]
fn every_container_has_probes_and_resources_and_a_pinned_image() {
    let Some(rendered) = render("deploy/k8s/overlays/local") else {
        return;
    };
    let objects = yaml_documents(&rendered);
    for (workload, _, pod) in pod_templates(&objects) {
        let ports = container_port_names(pod);
        for container in pod["containers"].as_array().expect("containers") {
            let image = text(&container["image"]);
            let tag = image.rsplit_once(':').map(|(_, tag)| tag);
            assert!(
                tag.is_some_and(|t| t != "latest"),
                "{workload}: image {image} is not pinned to a version"
            );
            for quantity in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        !container["resources"][quantity][resource].is_null(),
                        "{workload}: no {resource} {quantity}"
                    );
                }
            }
            assert!(
                !container["livenessProbe"].is_null(),
                "{workload}: no liveness probe"
            );
            let readiness = &container["readinessProbe"];
            assert!(!readiness.is_null(), "{workload}: no readiness probe");
            for probe in [readiness, &container["livenessProbe"]] {
                let port = text(&probe["httpGet"]["port"]);
                assert!(
                    probe["httpGet"].is_null() || ports.contains(&port) || port.parse::<u16>().is_ok(),
                    "{workload}: a probe uses port {port}, which the pod does not name"
                );
            }
        }
    }
    let gateway =
        &named(&objects, "StatefulSet", "lookout-gateway")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(gateway["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(gateway["livenessProbe"]["httpGet"]["path"], "/healthz");
}

#[test]
fn the_books_topology_has_its_replicas_autoscaler_volume_and_secret() {
    let Some(rendered) = render("deploy/k8s/overlays/local") else {
        return;
    };
    let objects = yaml_documents(&rendered);
    for (name, replicas) in [("books", "2"), ("web", "2"), ("books-v2", "1"), ("reviews", "1")] {
        assert_eq!(
            text(&named(&objects, "Deployment", name)["spec"]["replicas"]),
            replicas,
            "{name}"
        );
    }
    let gateway = named(&objects, "StatefulSet", "lookout-gateway");
    assert_eq!(text(&gateway["spec"]["replicas"]), "1");
    let hpa = named(&objects, "HorizontalPodAutoscaler", "lookout-gateway");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "StatefulSet");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "lookout-gateway");
    let claim = &gateway["spec"]["volumeClaimTemplates"][0];
    let pod = &gateway["spec"]["template"]["spec"];
    let mounts = pod["containers"][0]["volumeMounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == claim["metadata"]["name"] && m["mountPath"] == "/var/lib/lookout"),
        "the store's directory is on the persistent volume"
    );
    // The references resolve to objects of the rendering (ConfigMap and Secret names carry
    // kustomize's suffixes, so this also checks that kustomize rewrote them).
    let config_map = text(&pod["volumes"][0]["configMap"]["name"]);
    let config = named(&objects, "ConfigMap", &config_map);
    let secret_ref = &pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"];
    let secret = named(&objects, "Secret", &text(&secret_ref["name"]));
    let key = text(&secret_ref["key"]);
    assert!(
        !secret["data"][&key].is_null() || !secret["stringData"][&key].is_null(),
        "the Secret has the token"
    );
    config_names_existing_services(&objects, &text(&config["data"]["lookout.yaml"]));
}

/// Every `host:port` the gateway's config connects to is a Service of the rendering with that port.
fn config_names_existing_services(objects: &[Value], config_text: &str) {
    let config = yaml(config_text);
    let mut targets: Vec<String> = config["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .flat_map(|u| u["instances"].as_array().cloned().unwrap_or_default())
        .map(|i| text(&i))
        .collect();
    targets.push(
        text(&config["traces"]["endpoint"])
            .trim_start_matches("http://")
            .to_owned(),
    );
    for target in targets {
        let (host, port) = target.rsplit_once(':').expect("host:port");
        let service = named(objects, "Service", host);
        assert!(
            service["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .any(|p| text(&p["port"]) == port),
            "the config connects to {target}, but Service {host} has no port {port}"
        );
    }
}

#[test]
fn network_policies_let_clients_reach_the_gateway_only() {
    let Some(rendered) = render("deploy/k8s/overlays/local") else {
        return;
    };
    let objects = yaml_documents(&rendered);
    let policies = of_kind(&objects, "NetworkPolicy");
    assert!(
        policies.iter().any(
            |p| p["spec"]["podSelector"].as_object().is_some_and(|s| s.is_empty())
                && p["spec"]["ingress"].is_null()
        ),
        "a default-deny policy covers every pod"
    );
    let pods = pod_templates(&objects);
    for policy in &policies {
        let name = text(&policy["metadata"]["name"]);
        let selected: Vec<_> = pods
            .iter()
            .filter(|(_, labels, _)| selects(&policy["spec"]["podSelector"], labels))
            .collect();
        for rule in policy["spec"]["ingress"].as_array().into_iter().flatten() {
            // A rule without `from` admits every client.
            let open = rule["from"].is_null();
            for (workload, labels, pod) in &selected {
                assert!(
                    !open || labels["app.kubernetes.io/component"] == "gateway",
                    "policy {name} opens {workload} to every client"
                );
                for port in rule["ports"].as_array().into_iter().flatten() {
                    let port = text(&port["port"]);
                    assert!(
                        container_port_names(pod).contains(&port),
                        "policy {name} names port {port}, which {workload}'s pods do not"
                    );
                }
            }
        }
    }
}

/// A label selector with `matchLabels` and `In` expressions (all the policies use).
fn selects(selector: &Value, labels: &Value) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .is_none_or(|m| m.iter().all(|(k, v)| labels[k] == *v));
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            assert_eq!(e["operator"], "In", "only In expressions are checked here");
            e["values"]
                .as_array()
                .expect("values")
                .contains(&labels[text(&e["key"])])
        });
    by_labels && by_expressions
}

#[test]
fn the_service_monitor_scrapes_the_admin_port_with_the_token() {
    let (Some(monitoring), Some(overlay)) = (
        render("deploy/k8s/monitoring"),
        render("deploy/k8s/overlays/local"),
    ) else {
        return;
    };
    let objects = yaml_documents(&overlay);
    let monitor = &yaml_documents(&monitoring)[0];
    assert_eq!(monitor["kind"], "ServiceMonitor");
    let services: Vec<_> = of_kind(&objects, "Service")
        .into_iter()
        .filter(|s| {
            matches(
                &monitor["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .collect();
    assert_eq!(services.len(), 1, "the ServiceMonitor selects the admin Service");
    let endpoint = &monitor["spec"]["endpoints"][0];
    let ports = services[0]["spec"]["ports"].as_array().expect("ports");
    assert!(
        ports.iter().any(|p| p["name"] == endpoint["port"]),
        "the endpoint's port is the Service's"
    );
    let credentials = &endpoint["authorization"]["credentials"];
    let secret = named(&objects, "Secret", &text(&credentials["name"]));
    assert!(
        !secret["data"][text(&credentials["key"])].is_null(),
        "the token's Secret and key exist"
    );
    assert_eq!(
        monitor["metadata"]["namespace"],
        services[0]["metadata"]["namespace"]
    );
}
