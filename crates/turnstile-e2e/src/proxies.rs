//! What the proxy tests (`tests/nginx.rs`, `tests/caddy.rs`) share: the rules Turnstile runs
//! behind each proxy, and the shipped proxy file with its addresses pointed at a test's ports.

use crate::workspace_root;

/// The policies and `[[routes]]` behind every proxy test (TOML tables: top-level keys go
/// before them): a default budget of 3 a minute per client, and `POST /login` with a budget of
/// its own, 1 a minute, so the tests see the proxy describe the original request.
pub const FORWARD_AUTH_RULES: &str = r#"
[policies.default]
limit = 3
period = "1m"

[policies.login]
limit = 1
period = "1m"

[[routes]]
name = "login"
match = { path_prefix = "/login", methods = ["POST"] }
limits = [ { policy = "login", key = "client_ip" } ]

[[routes]]
match = { path_prefix = "/" }
limits = [ { policy = "default", key = "client_ip" } ]
"#;

/// The shipped file at `path` (from the workspace root) with each `(from, to)` replaced;
/// panics if the file no longer contains a `from`, so a test never runs a file it did not
/// rewire.
pub fn shipped_with(path: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    for (from, to) in replacements {
        assert!(text.contains(from), "{path} no longer has `{from}`");
        text = text.replace(from, to);
    }
    text
}
