//! Layered configuration: defaults < TOML file < TURNSTILE_* environment < command line, and
//! bad values rejected with the field named. figment's `Jail` isolates the environment and
//! the working directory of each test.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// figment's `Jail::expect_with` fixes its closures' error type to `figment::Error`.
#![allow(clippy::result_large_err)]

use std::path::Path;
use std::time::Duration;

use figment::Jail;
use serde::Serialize;
use turnstile_backend::{BackendKind, SimulatedWork, WorkKind};
use turnstile_gateway::Config;
use turnstile_gateway::config::{ConfigError, FailureMode};

#[derive(Serialize, Default)]
struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<usize>,
}

fn no_flags() -> Flags {
    Flags::default()
}

#[test]
fn defaults_are_the_documented_ones() {
    Jail::expect_with(|_| {
        let config = Config::load(None, &no_flags()).expect("defaults load");
        assert_eq!(config, Config::default());
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.backend, BackendKind::Concurrent);
        assert_eq!(config.shards, 16);
        assert_eq!(config.call_timeout, Duration::from_secs(5));
        assert!(config.trusted_proxies.is_empty(), "trust nobody by default");
        assert_eq!(config.policies["default"].limit, 100);
        assert_eq!(config.policies["default"].burst, Some(50));
        assert_eq!(config.policies["login"].period, Duration::from_secs(60));
        assert_eq!(config.forward_auth.deny_status, 429);
        Ok(())
    });
}

#[test]
fn file_then_environment_then_flags_each_override_the_previous() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "turnstile.toml",
            r#"
            backend = "actor"
            shards = 4
            max_keys = 5000
            call_timeout = "250ms"
            trusted_proxies = ["10.0.0.0/8"]

            [simulated_work]
            kind = "sleep"
            duration = "1ms"

            [policies.api]
            limit = 1000
            period = "1m"
            failure_mode = "closed"
            "#,
        )?;
        let file = Some(Path::new("turnstile.toml"));
        let config = Config::load(file, &no_flags()).expect("file loads");
        assert_eq!(config.backend, BackendKind::Actor);
        assert_eq!(config.shards, 4);
        assert_eq!(config.max_keys, 5000);
        assert_eq!(config.call_timeout, Duration::from_millis(250));
        assert_eq!(config.trusted_proxies, vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(
            config.simulated_work,
            Some(SimulatedWork {
                kind: WorkKind::Sleep,
                duration: Duration::from_millis(1)
            })
        );
        let api = &config.policies["api"];
        assert_eq!(
            (api.limit, api.burst, api.failure_mode),
            (1000, None, FailureMode::Closed)
        );
        assert!(
            config.policies.contains_key("default"),
            "built-in policies remain"
        );

        jail.set_env("TURNSTILE_BACKEND", "sharded");
        jail.set_env("TURNSTILE_SHARDS", "8");
        jail.set_env("TURNSTILE_POLICIES__API__LIMIT", "7");
        let config = Config::load(file, &no_flags()).expect("env loads");
        assert_eq!(config.backend, BackendKind::Sharded);
        assert_eq!(config.shards, 8);
        assert_eq!(config.policies["api"].limit, 7);
        assert_eq!(
            config.policies["api"].period,
            Duration::from_secs(60),
            "env merges, not replaces"
        );

        let flags = Flags {
            backend: Some("concurrent".into()),
            shards: Some(32),
        };
        let config = Config::load(file, &flags).expect("flags load");
        assert_eq!(config.backend, BackendKind::Concurrent);
        assert_eq!(config.shards, 32);

        // A user's policy of a built-in name replaces the built-in whole: its burst is its
        // own limit, not the built-in's 50.
        jail.set_env("TURNSTILE_POLICIES__DEFAULT__LIMIT", "3");
        jail.set_env("TURNSTILE_POLICIES__DEFAULT__PERIOD", "1m");
        let config = Config::load(file, &no_flags()).expect("env loads");
        let default = &config.policies["default"];
        assert_eq!((default.limit, default.burst), (3, None));
        assert_eq!(
            config.policies["login"].limit, 5,
            "untouched built-ins remain"
        );
        Ok(())
    });
}

fn error_text(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(config) => panic!("must be rejected, but loaded {config:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn a_bad_enum_value_names_the_field_and_the_valid_values() {
    Jail::expect_with(|jail| {
        jail.set_env("TURNSTILE_BACKEND", "genserver");
        // figment names env keys upper-cased: `key "BACKEND" in TURNSTILE_ environment variable(s)`.
        let message = error_text(Config::load(None, &no_flags())).to_lowercase();
        for expected in [
            "backend",
            "genserver",
            "actor",
            "sharded",
            "concurrent",
            "turnstile_",
        ] {
            assert!(
                message.contains(expected),
                "`{expected}` missing from: {message}"
            );
        }
        Ok(())
    });
}

#[test]
fn the_readmes_environment_examples_load() {
    // README "Configuration reference" and line 3 of deploy/turnstile.example.toml.
    Jail::expect_with(|jail| {
        jail.set_env("TURNSTILE_REDIS__MAX_IN_FLIGHT", "64");
        jail.set_env("TURNSTILE_POLICIES__LOGIN", r#"{limit=10, period="1m"}"#);
        let config = Config::load(None, &no_flags()).expect("the README's examples load");
        assert_eq!(config.redis.max_in_flight, 64);
        assert_eq!(config.policies["login"].limit, 10);
        assert_eq!(
            config.policies["login"].period,
            std::time::Duration::from_secs(60)
        );
        Ok(())
    });
}

#[test]
fn listen_addresses_may_be_host_names() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "a.toml",
            "listen = \"localhost:8095\"\nadmin_listen = \"localhost:8096\"",
        )?;
        let config =
            Config::load(Some(Path::new("a.toml")), &no_flags()).expect("localhost resolves");
        assert!(config.listen.ip().is_loopback(), "{}", config.listen);
        assert_eq!(config.listen.port(), 8095);
        assert_eq!(
            config.admin_listen.map(|address| address.port()),
            Some(8096)
        );

        jail.create_file("b.toml", "[rls]\nlisten = \"no-such-host.invalid:1\"")?;
        let message = error_text(Config::load(Some(Path::new("b.toml")), &no_flags()));
        assert!(
            message.contains("rls.listen") && message.contains("no-such-host.invalid:1"),
            "{message}"
        );
        jail.create_file("c.toml", "listen = \"localhost\"")?;
        let message = error_text(Config::load(Some(Path::new("c.toml")), &no_flags()));
        assert!(message.contains("host:port"), "{message}");
        Ok(())
    });
}

#[test]
fn sizes_allocated_up_front_are_bounded() {
    Jail::expect_with(|jail| {
        for (variable, field, max) in [
            ("TURNSTILE_SHARDS", "shards", Config::MAX_SHARDS),
            ("TURNSTILE_POOL_SIZE", "pool_size", Config::MAX_POOL_SIZE),
        ] {
            jail.set_env(variable, "100000000");
            let message = error_text(Config::load(None, &no_flags()));
            assert!(
                message.contains(field) && message.contains(&format!("maximum of {max}")),
                "{message}"
            );
            jail.set_env(variable, max.to_string());
            assert!(
                Config::load(None, &no_flags()).is_ok(),
                "{field} = {max} is allowed"
            );
            jail.set_env(variable, "1");
        }
        Ok(())
    });
}

#[test]
fn redis_modes_and_bounds_are_validated_naming_the_setting() {
    Jail::expect_with(|jail| {
        let load = |jail: &mut Jail, toml: &str| {
            jail.create_file("t.toml", &format!("backend = \"redis\"\n{toml}"))?;
            Ok::<_, figment::Error>(Config::load(Some(Path::new("t.toml")), &no_flags()))
        };
        for (toml, named, problem) in [
            (
                "redis_url = \"redis://a:1,redis://b:2\"",
                "redis_url",
                "redis.mode = \"cluster\"",
            ),
            (
                "redis_url = \"redis://:s3cret@a:1/3\"\n[redis]\nmode = \"cluster\"",
                "redis_url",
                "only database 0",
            ),
            (
                "redis_url = \"redis://a:1, nope\"\n[redis]\nmode = \"cluster\"",
                "redis_url",
                "`nope` is not a Redis URL",
            ),
            ("[redis]\nmode = \"sentinel\"", "mode", "standalone"),
            (
                "[redis]\nmax_in_flight = 0",
                "redis.max_in_flight",
                "at least 1",
            ),
            (
                "[redis]\nmax_in_flight = 100000000",
                "redis.max_in_flight",
                "maximum of 65536",
            ),
            ("[redis]\npool_size = 32", "pool_size", "max_in_flight"),
        ] {
            let message = error_text(load(jail, toml)?);
            assert!(
                message.contains(named) && message.contains(problem),
                "{toml}: {message}"
            );
            assert!(!message.contains("s3cret"), "{message}");
        }
        let config = load(
            jail,
            "redis_url = \"redis://a:7000, redis://b:7000\"\n[redis]\nmode = \"cluster\"\nlocal_deny_cache = false",
        )?
        .expect("a cluster's seed list");
        let backend = config.backend_config();
        assert_eq!(backend.redis.mode, turnstile_backend::RedisMode::Cluster);
        assert_eq!(
            backend.redis.url.seeds().collect::<Vec<_>>(),
            ["redis://a:7000", "redis://b:7000"]
        );
        assert!(!backend.redis.local_deny_cache);
        Ok(())
    });
}

#[test]
fn wrong_types_and_unknown_keys_name_the_field() {
    Jail::expect_with(|jail| {
        jail.create_file("a.toml", "shards = \"many\"")?;
        let message = error_text(Config::load(Some(Path::new("a.toml")), &no_flags()));
        assert!(message.contains("shards"), "{message}");

        jail.create_file("b.toml", "shardz = 3")?;
        let message = error_text(Config::load(Some(Path::new("b.toml")), &no_flags()));
        assert!(message.contains("shardz"), "{message}");

        jail.create_file("c.toml", "call_timeout = \"soon\"")?;
        let message = error_text(Config::load(Some(Path::new("c.toml")), &no_flags()));
        assert!(message.contains("call_timeout"), "{message}");

        let message = error_text(Config::load(Some(Path::new("missing.toml")), &no_flags()));
        assert!(
            message.contains("missing.toml") && message.contains("does not exist"),
            "{message}"
        );
        Ok(())
    });
}

#[test]
fn extraction_errors_name_the_setting_as_its_source_spells_it() {
    Jail::expect_with(|jail| {
        // A file: the dotted setting and the file; no `default.` (figment's profile, which
        // reads like the `default` policy).
        jail.create_file("a.toml", "shards = \"many\"")?;
        let message = error_text(Config::load(Some(Path::new("a.toml")), &no_flags()));
        assert_eq!(
            message,
            "invalid configuration: `shards` in a.toml: invalid type: found string \"many\", expected usize"
        );
        // An unknown key: where it was found, and the known ones listed without nested
        // backticks.
        jail.create_file(
            "b.toml",
            "[policies.login]\nlimit = 1\nperiod = \"1s\"\nbrust = 2",
        )?;
        let message = error_text(Config::load(Some(Path::new("b.toml")), &no_flags()));
        assert_eq!(
            message,
            "invalid configuration: `policies.login` in b.toml: unknown setting `brust` (known here: limit, period, burst, failure_mode)"
        );
        jail.create_file("c.toml", "shardz = 3")?;
        let message = error_text(Config::load(Some(Path::new("c.toml")), &no_flags()));
        assert!(
            message.starts_with("invalid configuration: c.toml: unknown setting `shardz` (known here: listen, backend, shards,"),
            "{message}"
        );
        assert!(!message.contains("``"), "{message}");
        Ok(())
    });
    Jail::expect_with(|jail| {
        // The environment: the variable's own name.
        jail.set_env("TURNSTILE_POLICIES__LOGIN__LIMIT", "10");
        let message = error_text(Config::load(None, &no_flags()));
        assert_eq!(
            message,
            "invalid configuration: `TURNSTILE_POLICIES__LOGIN`: missing `period`"
        );
        Ok(())
    });
    // A zero duration is named as written, not as `0ns`; the backend's checks do not repeat
    // the setting's name.
    for (toml, expected) in [
        (
            "[policies.default]\nlimit = 5\nperiod = \"0s\"",
            "invalid configuration: `policies.default`: period must be greater than zero",
        ),
        (
            "call_timeout = \"0s\"",
            "invalid configuration: `call_timeout`: must be greater than zero",
        ),
    ] {
        let message = error_text(Config::from_toml(&[toml], &serde_json::Map::new()));
        assert_eq!(message, expected);
    }
}

#[test]
fn semantic_errors_name_the_field() {
    let cases = [
        (
            "[policies.login]\nlimit = 0\nperiod = \"1s\"",
            "policies.login",
            "limit must be at least 1",
        ),
        (
            "[policies.x]\nlimit = 5\nperiod = \"1s\"\nburst = 0",
            "policies.x",
            "burst",
        ),
        (
            "[gateway]\npolicy = \"nope\"",
            "gateway.policy",
            "default, login",
        ),
        (
            "[forward_auth]\npolicy = \"default\"\ndeny_status = 200",
            "forward_auth.deny_status",
            "400-599",
        ),
        ("shards = 0", "shards", "at least 1"),
        ("max_keys = 0", "max_keys", "at least 1"),
        ("mailbox_capacity = 0", "mailbox_capacity", "at least 1"),
        ("ipv6_prefix_len = 129", "ipv6_prefix_len", "128"),
        (
            "mailbox_when_full = \"drop\"",
            "mailbox_when_full",
            "reject",
        ),
    ];
    for (toml, field, hint) in cases {
        Jail::expect_with(|jail| {
            jail.create_file("t.toml", toml)?;
            let message = error_text(Config::load(Some(Path::new("t.toml")), &no_flags()));
            assert!(message.contains(field), "`{field}` missing from: {message}");
            assert!(message.contains(hint), "`{hint}` missing from: {message}");
            Ok(())
        });
    }
}

#[test]
fn the_public_demo_token_is_refused_beyond_loopback_unless_the_demo_says_so() {
    use turnstile_gateway::config::DEMO_ADMIN_TOKEN;
    // The configuration `toml` loads to: `Ok`, or the error as text.
    let outcome = |toml: &str| -> Result<(), String> {
        let mut seen = None;
        Jail::expect_with(|jail| {
            jail.create_file("t.toml", toml)?;
            seen = Some(
                Config::load(Some(Path::new("t.toml")), &no_flags())
                    .map(|_| ())
                    .map_err(|error| error.to_string()),
            );
            Ok(())
        });
        seen.expect("the jail ran")
    };
    let public = format!("admin_listen = \"0.0.0.0:9091\"\nadmin_token = \"{DEMO_ADMIN_TOKEN}\"\n");
    let refused = outcome(&public).unwrap_err();
    assert!(refused.contains("admin_token"), "{refused}");
    assert!(refused.contains("documented demo token"), "{refused}");
    assert!(refused.contains("admin_allow_demo_token"), "{refused}");
    for accepted in [
        format!("{public}admin_allow_demo_token = true\n"),
        "admin_listen = \"0.0.0.0:9091\"\nadmin_token = \"a-token-of-my-own\"\n".to_owned(),
        format!("admin_listen = \"127.0.0.1:9091\"\nadmin_token = \"{DEMO_ADMIN_TOKEN}\"\n"),
    ] {
        assert_eq!(outcome(&accepted), Ok(()), "{accepted}");
    }
}

#[test]
fn the_shipped_example_config_is_exactly_the_defaults() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/turnstile.example.toml");
    Jail::expect_with(|_| {
        let config = Config::load(Some(&example), &no_flags()).expect("example loads");
        assert_eq!(
            config,
            Config::default(),
            "deploy/turnstile.example.toml drifted from the defaults"
        );
        Ok(())
    });
}

#[test]
fn debug_output_hides_the_admin_token_and_the_redis_password() {
    let config = Config {
        admin_token: Some("hunter2-token".into()),
        redis_url: "redis://app:hunter2-password@redis:6379/0".into(),
        ..Config::default()
    };
    let shown = format!("{config:?} {:?}", config.backend_config());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("<redacted>") && shown.contains("redis://app:***@redis:6379/0"));
    // The values themselves are intact for the code that needs them.
    assert_eq!(
        config.backend_config().redis.url.expose(),
        "redis://app:hunter2-password@redis:6379/0"
    );
    // A bad URL quoted in an error is redacted too.
    let bad = Config {
        backend: BackendKind::Redis,
        redis_url: "redis://:hunter2@".into(),
        ..Config::default()
    };
    if let Err(error) = bad.validate() {
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }
}
