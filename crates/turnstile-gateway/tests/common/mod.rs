//! Helpers shared by the gateway's integration tests: the harness is
//! `turnstile_gateway::testing`; this adds the tests' own small configuration.

#![allow(dead_code, unreachable_pub)]

// Not every test file uses every helper.
use turnstile_gateway::Config;
#[allow(unused_imports)]
pub use turnstile_gateway::testing::{TestGateway, TestResponse, get, json_post};

/// A config with one small policy as the default, for readable expectations.
pub fn small_config() -> Config {
    let mut config = Config::default();
    config.policies.insert(
        "default".into(),
        turnstile_gateway::config::PolicyConfig {
            limit: 10,
            period: std::time::Duration::from_secs(1),
            burst: Some(5),
            failure_mode: Default::default(),
        },
    );
    config
}
