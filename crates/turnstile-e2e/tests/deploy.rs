//! The deployment files agree with each other and with the code, checked without Docker or
//! Kubernetes (neither runs here): docker-compose.yml's structure, paths, ports and
//! dependencies; every gateway's `TURNSTILE_*` environment is a configuration the gateway
//! accepts; Prometheus scrapes exactly the compose gateways; Grafana's mounts match its
//! provisioning; the Dockerfile builds binaries that exist and probes with a flag the binary
//! has; every Kubernetes ConfigMap holds a valid configuration its pods mount where they read;
//! every rule directory a gateway is pointed at loads, and the Envoy example's `rate_limits`
//! actions produce descriptors those rules limit.

// Test code: a panic is how a failure is reported. figment's `Jail` closures return its
// (large) error type; that is its API, not ours.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;
use serde_yaml::Value;
use turnstile_e2e::{gateway_binary, workspace_root};
use turnstile_gateway::Config;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(workspace_root().join(path)).unwrap();
    let mut value: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"));
    value.apply_merge().unwrap();
    value
}

fn services() -> serde_yaml::Mapping {
    yaml("docker-compose.yml")["services"]
        .as_mapping()
        .expect("docker-compose.yml has services")
        .clone()
}

fn name(key: &Value) -> String {
    key.as_str().unwrap().to_owned()
}

/// `${VAR:-default}` → `default`, as compose substitutes with VAR unset.
fn substitute_defaults(value: &str) -> String {
    let mut out = value.to_owned();
    while let Some(start) = out.find("${") {
        let end = start + out[start..].find('}').expect("closed ${…}");
        let inner = &out[start + 2..end];
        let default = inner
            .split_once(":-")
            .map_or("", |(_, default)| default)
            .to_owned();
        out.replace_range(start..=end, &default);
    }
    out
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(key, value)| {
            let value = match value {
                Value::String(text) => substitute_defaults(text),
                other => serde_yaml::to_string(other).unwrap().trim().to_owned(),
            };
            (name(key), value)
        })
        .collect()
}

/// The configuration a gateway gets from `file` and `env` (and nothing else), as the binary
/// loads it.
fn load_config(file: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, String> {
    let mut outcome = Err("jail did not run".to_owned());
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for (key, value) in env {
            jail.set_env(key, value);
        }
        outcome = Config::load(file, &serde_json::Map::new()).map_err(|error| error.to_string());
        Ok(())
    });
    outcome
}

fn config_from_env(env: &BTreeMap<String, String>) -> Result<Config, String> {
    load_config(None, env)
}

fn gateway_services() -> BTreeMap<String, Config> {
    services()
        .iter()
        .filter(|(_, service)| environment(service).contains_key("TURNSTILE_BACKEND"))
        .map(|(key, service)| {
            let config = config_from_env(&environment(service))
                .unwrap_or_else(|error| panic!("{}: {error}", name(key)));
            (name(key), config)
        })
        .collect()
}

#[test]
fn every_compose_gateway_gets_a_configuration_the_gateway_accepts() {
    let gateways = gateway_services();
    let backends: BTreeSet<String> = gateways
        .values()
        .map(|config| config.backend.to_string())
        .collect();
    assert_eq!(
        backends,
        turnstile_backend::BackendKind::ALL
            .map(|kind| kind.to_string())
            .into(),
        "one gateway per backend"
    );
    let services = services();
    for (service, config) in &gateways {
        assert!(
            config.listen.ip().is_unspecified(),
            "{service} must listen beyond loopback"
        );
        // Envoy's rate limit service, with its rules mounted from a directory that loads.
        assert!(
            config
                .rls
                .listen
                .is_some_and(|rls| rls.ip().is_unspecified()),
            "{service}: the rate limit service must listen beyond loopback"
        );
        let rules_dir = config.rls.config_dir.as_ref().expect("a rule directory");
        let volumes = services[service.as_str()]["volumes"].as_sequence().unwrap();
        let host = volumes
            .iter()
            .filter_map(|volume| {
                let (host, target) = volume.as_str()?.split_once(':')?;
                (Path::new(target.trim_end_matches(":ro")) == rules_dir).then_some(host)
            })
            .next()
            .unwrap_or_else(|| panic!("{service}: nothing is mounted at {}", rules_dir.display()));
        let loaded = turnstile_rules::load_dir(&workspace_root().join(host))
            .unwrap_or_else(|error| panic!("{service}: {error}"));
        assert!(loaded.rules.has_domain("edge"), "{service}: {host}");
        assert!(
            config.admin_token.is_some(),
            "{service}: a non-loopback admin needs a token"
        );
    }
}

#[test]
fn compose_services_reference_existing_paths_services_and_unique_loopback_ports() {
    let services = services();
    let names: BTreeSet<String> = services.keys().map(name).collect();
    let mut host_ports = BTreeSet::new();
    for (key, service) in &services {
        let service_name = name(key);
        assert!(
            service.get("image").is_some() || service.get("build").is_some(),
            "{service_name}: neither image nor build"
        );
        for port in service["ports"].as_sequence().into_iter().flatten() {
            let port = port.as_str().unwrap();
            let parts: Vec<&str> = port.split(':').collect();
            assert_eq!(
                parts.len(),
                3,
                "{service_name}: `{port}` must name the host address"
            );
            assert_eq!(
                parts[0], "127.0.0.1",
                "{service_name}: `{port}` is not loopback-only"
            );
            assert!(
                host_ports.insert(parts[1].to_owned()),
                "host port {port} used twice"
            );
        }
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(
                    workspace_root().join(host).exists(),
                    "{service_name}: {host} does not exist"
                );
            }
        }
        let depends = &service["depends_on"];
        let dependencies: Vec<(String, Option<String>)> = match depends {
            Value::Sequence(list) => list.iter().map(|d| (name(d), None)).collect(),
            Value::Mapping(map) => map
                .iter()
                .map(|(d, how)| (name(d), how["condition"].as_str().map(str::to_owned)))
                .collect(),
            _ => Vec::new(),
        };
        for (dependency, condition) in dependencies {
            assert!(
                names.contains(&dependency),
                "{service_name} depends on unknown {dependency}"
            );
            if condition.as_deref() == Some("service_healthy") {
                let target = &services[dependency.as_str()];
                let has_check = target.get("healthcheck").is_some()
                    || target["image"].as_str() == Some("turnstile:local");
                assert!(has_check, "{dependency} has no healthcheck to wait for");
            }
        }
    }
}

#[test]
fn prometheus_scrapes_exactly_the_compose_gateways_on_their_ports() {
    let gateways = gateway_services();
    let expected: BTreeSet<String> = gateways
        .iter()
        .map(|(service, config)| format!("{service}:{}", config.listen.port()))
        .collect();
    let prometheus = yaml("deploy/prometheus/prometheus.yml");
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|job| job["job_name"] == "turnstile")
        .expect("a turnstile job");
    let targets: BTreeSet<String> = job["static_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["targets"].as_sequence().unwrap().iter().map(name))
        .collect();
    assert_eq!(targets, expected);
    for rule_file in prometheus["rule_files"].as_sequence().unwrap() {
        let path = workspace_root()
            .join("deploy/prometheus")
            .join(rule_file.as_str().unwrap());
        assert!(path.is_file(), "{}", path.display());
    }
    let service = &services()["prometheus"];
    let mounts: Vec<&str> = service["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        mounts.contains(&"./deploy/prometheus:/etc/prometheus:ro"),
        "{mounts:?}"
    );
}

#[test]
fn grafana_mounts_match_its_provisioning_and_the_home_dashboard_exists() {
    let services = services();
    let grafana = &services["grafana"];
    let mounts: BTreeMap<String, String> = grafana["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.as_str().unwrap().split(':').collect();
            (parts[1].to_owned(), parts[0].to_owned())
        })
        .collect();
    assert_eq!(
        mounts.get("/etc/grafana/provisioning").map(String::as_str),
        Some("./deploy/grafana/provisioning")
    );
    let provider = yaml("deploy/grafana/provisioning/dashboards/turnstile.yml");
    let path = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    assert_eq!(mounts.get(path).map(String::as_str), Some("./dashboards"));
    let datasources = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let url = datasources["datasources"][0]["url"].as_str().unwrap();
    assert!(
        services.contains_key("prometheus") && url.contains("prometheus:9090"),
        "{url}"
    );
    let home = environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"].clone();
    let file = home
        .strip_prefix(&format!("{path}/"))
        .expect("home dashboard under the mount");
    assert!(
        workspace_root().join("dashboards").join(file).is_file(),
        "{home}"
    );
}

#[test]
fn the_loadgen_service_targets_the_compose_gateways_and_their_admin_apis() {
    let gateways = gateway_services();
    let services = services();
    let command: Vec<String> = services["loadgen"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(name)
        .collect();
    let scenario = command
        .iter()
        .find_map(|arg| arg.strip_prefix("--scenario="))
        .unwrap();
    assert!(workspace_root().join(scenario).is_file(), "{scenario}");
    let mut targeted = BTreeSet::new();
    for spec in command.iter().filter_map(|arg| arg.strip_prefix("--url=")) {
        let (_, urls) = spec.split_once('=').unwrap();
        let (public, admin) = urls.split_once(",admin=").unwrap();
        let host_port = |url: &str| url.trim_start_matches("http://").to_owned();
        let (service, port) = host_port(public)
            .split_once(':')
            .map(|(s, p)| (s.to_owned(), p.to_owned()))
            .unwrap();
        let config = &gateways[&service];
        assert_eq!(port, config.listen.port().to_string(), "{spec}");
        let admin_port = config
            .admin_listen
            .expect("an admin listener")
            .port()
            .to_string();
        assert_eq!(
            host_port(admin),
            format!("{service}:{admin_port}"),
            "{spec}"
        );
        targeted.insert(service);
    }
    assert_eq!(targeted, gateways.keys().cloned().collect());

    // The fault run: its target and admin API are one gateway's, which believes the
    // generator's X-Forwarded-For (the scenario drives the gateway route).
    let faults: Vec<String> = services["loadgen-faults"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(name)
        .collect();
    let flag = |prefix: &str| {
        faults
            .iter()
            .find_map(|arg| arg.strip_prefix(prefix))
            .unwrap()
            .trim_start_matches("http://")
            .to_owned()
    };
    assert!(workspace_root().join(flag("--scenario=")).is_file());
    let (service, port) = flag("--target=")
        .split_once(':')
        .map(|(s, p)| (s.to_owned(), p.to_owned()))
        .unwrap();
    let config = &gateways[&service];
    assert_eq!(port, config.listen.port().to_string());
    let admin_port = config.admin_listen.unwrap().port();
    assert_eq!(flag("--admin="), format!("{service}:{admin_port}"));
    assert!(
        !config.trusted_proxies.is_empty(),
        "{service} ignores X-Forwarded-For"
    );
}

#[test]
fn the_dockerfile_builds_real_binaries_and_probes_with_a_real_flag() {
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    // The RUN steps, continuation lines joined.
    let joined = dockerfile.replace("\\\n", " ");
    let step = |what: &str| {
        joined
            .lines()
            .find(|line| line.starts_with("RUN cargo ") && line.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` step"))
    };
    for binary in ["turnstile", "turnstile-load"] {
        for what in ["chef cook", "cargo build"] {
            let args: Vec<&str> = step(what).split_whitespace().collect();
            assert!(
                args.windows(2).any(|w| w == ["--bin", binary]),
                "{binary} not in the `{what}` step: the cached dependencies must be the built ones"
            );
        }
    }
    assert!(
        workspace_root()
            .join("crates/turnstile-gateway/src/main.rs")
            .is_file()
    );
    assert!(
        workspace_root()
            .join("crates/turnstile-load/src/main.rs")
            .is_file()
    );
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER line");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "runs as {user}"
    );
    assert!(dockerfile.contains(r#"CMD ["turnstile", "--healthcheck"]"#));
    let help = std::process::Command::new(gateway_binary())
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("--healthcheck"));
    let listen = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("ENV TURNSTILE_LISTEN="))
        .expect("the image listens beyond loopback");
    let config = config_from_env(&BTreeMap::from([(
        "TURNSTILE_LISTEN".into(),
        listen.into(),
    )]))
    .unwrap();
    assert!(config.listen.ip().is_unspecified());
    // What the build copies must survive .dockerignore.
    let ignored = std::fs::read_to_string(workspace_root().join(".dockerignore")).unwrap();
    for needed in ["crates", "Cargo.toml", "Cargo.lock", "loadtest"] {
        assert!(
            !ignored
                .lines()
                .any(|line| line.trim_end_matches('/') == needed),
            ".dockerignore drops {needed}"
        );
    }
}

/// Every file of deploy/kubernetes: its name and its YAML documents.
fn kubernetes_manifests() -> Vec<(String, Vec<Value>)> {
    let dir = workspace_root().join("deploy/kubernetes");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let documents = serde_yaml::Deserializer::from_str(&text)
                .map(|document| Value::deserialize(document).unwrap())
                .collect();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            (file, documents)
        })
        .collect()
}

/// A pod spec's containers, then its init containers (native sidecars among them).
fn pod_containers(spec: &Value) -> impl Iterator<Item = &Value> {
    let init = spec["initContainers"].as_sequence().into_iter().flatten();
    spec["containers"].as_sequence().unwrap().iter().chain(init)
}

#[test]
fn every_kubernetes_config_map_is_a_valid_configuration_mounted_where_it_is_read() {
    let mut checked = 0;
    for (manifest, documents) in kubernetes_manifests() {
        let config_maps: BTreeMap<String, &Value> = documents
            .iter()
            .filter(|d| d["kind"] == "ConfigMap")
            .map(|d| (name(&d["metadata"]["name"]), d))
            .collect();
        for deployment in documents.iter().filter(|d| d["kind"] == "Deployment") {
            let spec = &deployment["spec"]["template"]["spec"];
            for container in pod_containers(spec) {
                if container["image"] != "turnstile:local" {
                    continue;
                }
                let args: Vec<String> = container["args"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .map(name)
                    .collect();
                let config_path = Path::new(&args[1]);
                let mount = container["volumeMounts"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|m| config_path.starts_with(m["mountPath"].as_str().unwrap()))
                    .expect("the config file's directory is mounted");
                let volume = spec["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == mount["name"])
                    .unwrap();
                let map_name = name(&volume["configMap"]["name"]);
                let file = config_path.file_name().unwrap().to_str().unwrap();
                let toml = config_maps[&map_name]["data"][file].as_str().unwrap();
                let scratch = turnstile_e2e::scratch_dir();
                let file_path = scratch.path().join(file);
                std::fs::write(&file_path, toml).unwrap();
                let config = load_config(Some(&file_path), &BTreeMap::new())
                    .unwrap_or_else(|error| panic!("{}: {map_name}: {error}", manifest));
                if let Some(rules_dir) = &config.rls.config_dir {
                    // The rules' ConfigMap, mounted where `rls.config_dir` reads, loads, and
                    // is the shipped rules file.
                    let mount = container["volumeMounts"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .find(|m| Path::new(m["mountPath"].as_str().unwrap()) == rules_dir)
                        .unwrap_or_else(|| {
                            panic!("{}: nothing mounted at {}", manifest, rules_dir.display())
                        });
                    let volume = spec["volumes"]
                        .as_sequence()
                        .unwrap()
                        .iter()
                        .find(|v| v["name"] == mount["name"])
                        .unwrap();
                    let rules_map = config_maps[&name(&volume["configMap"]["name"])];
                    let rules = scratch.path().join("rules");
                    std::fs::create_dir(&rules).unwrap();
                    for (file, text) in rules_map["data"].as_mapping().unwrap() {
                        std::fs::write(rules.join(name(file)), text.as_str().unwrap()).unwrap();
                    }
                    turnstile_rules::load_dir(&rules)
                        .unwrap_or_else(|error| panic!("{}: {error}", manifest));
                    assert_eq!(
                        rules_map["data"]["edge.yaml"].as_str().unwrap(),
                        std::fs::read_to_string(
                            workspace_root().join("deploy/ratelimit/edge.yaml")
                        )
                        .unwrap(),
                        "{}: the rules ConfigMap is deploy/ratelimit/edge.yaml",
                        manifest
                    );
                }
                for probe in ["readinessProbe", "livenessProbe"] {
                    if let Some(http) = container[probe]["httpGet"].as_mapping() {
                        let probe_path = http[&Value::from("path")].as_str().unwrap();
                        assert!(
                            ["/readyz", "/healthz"].contains(&probe_path),
                            "{probe_path}"
                        );
                        assert!(
                            config.listen.ip().is_unspecified(),
                            "{}: probes need a reachable listener",
                            manifest
                        );
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "only {checked} turnstile containers checked");
}

#[test]
fn docker_compose_yml_conforms_to_the_compose_specification_schema() {
    // The Compose Specification's JSON schema as docker-compose 1.29.2 ships it (Apache-2.0),
    // vendored because this machine cannot fetch it; `docker compose config` would do the same
    // where a Docker engine is available.
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../schemas/compose-spec.json")).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON schema");
    let compose: serde_json::Value =
        serde_json::to_value(yaml("docker-compose.yml")).expect("YAML maps to JSON");
    let errors: Vec<String> = validator
        .iter_errors(&compose)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "docker-compose.yml: {errors:#?}");
}

#[test]
fn the_envoy_example_produces_descriptors_the_shipped_rules_limit() {
    let envoy = yaml("deploy/envoy/envoy.yaml");
    let rules = turnstile_rules::load_dir(&workspace_root().join("deploy/ratelimit")).unwrap();
    let manager = &envoy["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filter = manager["http_filters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|filter| filter["name"] == "envoy.filters.http.ratelimit")
        .expect("the rate limit filter");
    let domain = filter["typed_config"]["domain"].as_str().unwrap();
    assert!(rules.rules.has_domain(domain), "domain `{domain}`");
    assert_eq!(
        filter["typed_config"]["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"],
        "turnstile"
    );
    let actions = manager["route_config"]["virtual_hosts"][0]["rate_limits"]
        .as_sequence()
        .unwrap();
    assert!(!actions.is_empty());
    for rate_limit in actions {
        // The descriptor Envoy builds from these actions, for a client 192.0.2.1.
        let entries: Vec<(String, String)> = rate_limit["actions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|action| {
                if action.get("remote_address").is_some() {
                    ("remote_address".to_owned(), "192.0.2.1".to_owned())
                } else if let Some(matched) = action.get("header_value_match") {
                    (
                        "header_match".to_owned(),
                        name(&matched["descriptor_value"]),
                    )
                } else {
                    panic!("an action this test does not model: {action:?}")
                }
            })
            .collect();
        let found = rules.rules.find(
            domain,
            entries.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert!(found.is_some(), "no rule limits {entries:?}");
    }
    // The cluster points at the port the compose gateways serve the rate limit service on.
    let cluster = envoy["static_resources"]["clusters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|cluster| cluster["name"] == "turnstile")
        .unwrap();
    let port = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        ["socket_address"]["port_value"]
        .as_u64()
        .unwrap();
    for (service, config) in gateway_services() {
        assert_eq!(
            config.rls.listen.map(|address| u64::from(address.port())),
            Some(port),
            "{service}"
        );
    }
}

/// What a review of the compose file found (issue 17): a gateway stopped before its drain
/// ends, monitoring held hostage by a sick gateway, logs and memory unbounded, Redis failing
/// every check once full, and load generators inheriting a gateway's health check.
#[test]
fn compose_drains_gateways_bounds_resources_and_keeps_monitoring_independent() {
    let services = services();
    let grace = Config::default().shutdown_grace;
    let seconds = |value: &Value| -> u64 {
        let text = value.as_str().expect("a duration such as 15s");
        text.strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("`{text}` is not whole seconds"))
    };
    for (key, service) in &services {
        let service_name = name(key);
        let on_demand = service.get("profiles").is_some();
        if !on_demand {
            assert!(
                service["logging"]["options"]["max-size"].is_string(),
                "{service_name}: unbounded logs"
            );
        }
        if service_name.starts_with("gateway-") {
            assert!(
                seconds(&service["stop_grace_period"]) > grace.as_secs(),
                "{service_name}: stopped (SIGKILL) before its {grace:?} drain ends"
            );
            assert!(
                service["mem_limit"].is_string(),
                "{service_name}: no memory limit"
            );
            assert!(service["cpus"].is_number(), "{service_name}: no CPU limit");
        }
        if service_name.starts_with("loadgen") {
            assert_eq!(
                service["healthcheck"]["disable"],
                Value::Bool(true),
                "{service_name}: inherits the gateway's HEALTHCHECK"
            );
        }
    }
    for monitoring in ["prometheus", "grafana"] {
        for (dependency, condition) in services[monitoring]["depends_on"].as_mapping().unwrap() {
            assert_eq!(
                condition["condition"].as_str(),
                Some("service_started"),
                "{monitoring} waits for {} to be healthy",
                name(dependency)
            );
        }
    }
    let redis: Vec<&str> = services["redis"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let policy = redis
        .iter()
        .position(|arg| *arg == "--maxmemory-policy")
        .map(|at| redis[at + 1]);
    assert_eq!(policy, Some("volatile-ttl"), "{redis:?}");
}

/// What a review of the Dockerfile found (issue 17): an unpinned base, a frontend image
/// pulled for nothing, a user whose gid names no group, and a probe whose own timeout equals
/// the runtime's.
#[test]
fn the_dockerfile_pins_its_bases_names_its_group_and_probes_within_the_runtimes_timeout() {
    let dockerfile = std::fs::read_to_string(workspace_root().join("Dockerfile")).unwrap();
    assert!(
        !dockerfile.contains("# syntax="),
        "no dockerfile frontend image to pull"
    );
    let arguments: BTreeMap<&str, &str> = dockerfile
        .lines()
        .filter_map(|line| line.strip_prefix("ARG "))
        .filter_map(|arg| arg.split_once('='))
        .collect();
    for line in dockerfile.lines().filter(|line| line.starts_with("FROM ")) {
        let image = line.split_whitespace().nth(1).unwrap();
        let image = image
            .strip_prefix("${")
            .and_then(|arg| arg.strip_suffix('}'))
            .map_or(image, |arg| arguments[arg]);
        let stage_names: Vec<&str> = dockerfile
            .lines()
            .filter_map(|l| l.strip_prefix("FROM "))
            .filter_map(|l| l.split_once(" AS ").map(|(_, name)| name.trim()))
            .collect();
        if stage_names.contains(&image) {
            continue;
        }
        let tag = image.rsplit_once(':').map(|(_, tag)| tag).unwrap_or("");
        assert!(
            !tag.is_empty() && !tag.contains("latest"),
            "`{line}`: base image {image} is not pinned"
        );
    }
    assert!(
        dockerfile.contains("groupadd --system --gid 10001")
            && dockerfile.contains("--gid 10001")
            && dockerfile.contains("USER 10001:10001"),
        "the runtime gid 10001 is a real group"
    );
    let timeout = dockerfile
        .lines()
        .find_map(|line| line.split("--timeout=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.strip_suffix('s'))
        .and_then(|seconds| seconds.parse::<u64>().ok())
        .expect("HEALTHCHECK --timeout=Ns");
    assert!(
        turnstile_gateway::cli::PROBE_TIMEOUT < std::time::Duration::from_secs(timeout),
        "the probe gives up ({:?}) before the runtime does ({timeout} s)",
        turnstile_gateway::cli::PROBE_TIMEOUT
    );
}

/// Every Deployment of deploy/kubernetes (issue 17's review): Pod Security "restricted" for
/// every container but the user's app; readiness that survives a Redis outage; exec probes
/// that outlast the probe's own timeout; the sidecar a native one.
#[test]
fn kubernetes_pods_are_restricted_ready_through_outages_and_the_sidecar_is_native() {
    let mut deployments = 0;
    for (file, documents) in kubernetes_manifests() {
        for document in documents.iter().filter(|d| d["kind"] == "Deployment") {
            deployments += 1;
            let spec = &document["spec"]["template"]["spec"];
            assert_eq!(
                spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{file}: seccomp"
            );
            assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{file}");
            for container in pod_containers(spec) {
                let image = container["image"].as_str().unwrap();
                if image.starts_with("my-service") {
                    continue; // the user's app
                }
                let security = &container["securityContext"];
                assert_eq!(
                    security["allowPrivilegeEscalation"], false,
                    "{file}: {image}"
                );
                assert_eq!(
                    security["capabilities"]["drop"][0], "ALL",
                    "{file}: {image} keeps capabilities"
                );
                for probe in ["readinessProbe", "livenessProbe"] {
                    let probe = &container[probe];
                    if probe["exec"]["command"][0] == "turnstile" {
                        let timeout = probe["timeoutSeconds"].as_u64().unwrap_or(1);
                        assert!(
                            std::time::Duration::from_secs(timeout)
                                > turnstile_gateway::cli::PROBE_TIMEOUT,
                            "{file}: the exec probe is cut before it gives up itself"
                        );
                    }
                }
                if image == "turnstile:local" {
                    assert_ne!(
                        container["readinessProbe"]["httpGet"]["path"], "/readyz",
                        "{file}: a Redis outage would empty the Service"
                    );
                }
            }
            if file == "sidecar.yaml" {
                let sidecar = &spec["initContainers"][0];
                assert_eq!(sidecar["image"], "turnstile:local");
                assert_eq!(sidecar["restartPolicy"], "Always", "a native sidecar");
            }
            if file == "redis-replicas.yaml" && document["metadata"]["name"] == "turnstile" {
                assert!(
                    spec["containers"][0]["lifecycle"]["preStop"].is_mapping(),
                    "leave the endpoints before draining"
                );
            }
        }
    }
    assert_eq!(deployments, 3);
}

/// The compose demo's default admin token is the gateway's `DEMO_ADMIN_TOKEN` (refused beyond
/// loopback unless allowed), and every service that uses it says it is a demo or calls one.
#[test]
fn compose_uses_the_gateways_demo_token_and_allows_it_only_as_a_demo() {
    let demo = turnstile_gateway::config::DEMO_ADMIN_TOKEN;
    for (key, service) in &services() {
        let env = environment(service);
        let Some(token) = env.get("TURNSTILE_ADMIN_TOKEN") else {
            continue;
        };
        assert_eq!(token, demo, "{}: the default token", name(key));
        if name(key).starts_with("gateway-") {
            assert_eq!(
                env.get("TURNSTILE_ADMIN_ALLOW_DEMO_TOKEN")
                    .map(String::as_str),
                Some("true"),
                "{}: refuses its own token without the opt-in",
                name(key)
            );
        }
    }
}
