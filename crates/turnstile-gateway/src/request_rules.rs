//! Request rules (`[[routes]]`): which limits a request on the gateway route or
//! `/v1/forward-auth` must pass, and the key each limit counts it under.
//!
//! A rule matches on the request's normalized path (a prefix), its method and the presence of
//! a header; rules are tried in order and the first match wins. Its limits name a policy and a
//! key source (`client_ip`, `header:<name>`, `path`, `method`, `global`). Without `[[routes]]`
//! each route has one implicit rule, today's: `gateway.policy` (or `forward_auth.policy`) for
//! every path, by client IP (or `forward_auth.key_header`).
//!
//! # One rule engine, two front ends
//!
//! Envoy's descriptors and these rules end in the same place: a policy and a backend key per
//! limit, decided by [`run_check`](crate::routes) on the active backend, the key composed by
//! `turnstile_rules::KeyBuilder` (length-prefixed parts, hashed past `MAX_KEY_LEN`). What
//! differs is only the front end, because the inputs differ: a descriptor tree is looked up by
//! exact entries (most specific wins), while an HTTP request is matched by ordered prefixes,
//! methods and headers (first match wins, as nginx's and Traefik's routers do). Encoding a
//! request as made-up descriptors only to look them up again would add a lookup and explain
//! nothing.
//!
//! # Invariants
//!
//! - Matching never allocates for a path already in normal form; the path a rule sees is
//!   normalized (unreserved `%XX` decoded, `//` merged, `.` and `..` resolved), so `/%6Cogin`
//!   and `//login` meet the rules of `/login`. The request forwarded is untouched.
//! - A key names its source: a header's value can never count against a client IP's key, or
//!   another header's. `client_ip` keys are the bare address, as `/v1/check` callers key
//!   clients, and as this route did before rules existed.
//! - Every policy and header a rule names exists, checked when the configuration is loaded; a
//!   rule's name comes from the configuration, so it can be a metric label.

use std::borrow::Cow;
use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderName, Method};
use turnstile_backend::MAX_KEY_LEN;
use turnstile_rules::{KeyBuilder, RuleKey};

use crate::client_ip::ClientKey;
use crate::config::{ConfigError, LimitConfig, OnMissing, RouteConfig};
use crate::error::ApiError;
use crate::metrics::{Metrics, RouteCounters, UpstreamCounters};

/// The rules of one route (the gateway route, or forward-auth), in order.
pub(crate) struct RouteTable {
    rules: Vec<RouteRule>,
    /// Rule-less requests are admitted and counted here.
    pub(crate) unmatched: prometheus::IntCounter,
    /// And their upstream's answers here (rule `""`).
    pub(crate) unmatched_upstream: UpstreamCounters,
}

/// One rule.
pub(crate) struct RouteRule {
    /// From the configuration (or `routes[N]`): its metric label.
    pub(crate) name: String,
    path_prefix: String,
    /// Empty: any method.
    methods: Vec<Method>,
    header: Option<HeaderName>,
    pub(crate) limits: Vec<RouteLimit>,
    pub(crate) shadow: bool,
    pub(crate) counters: RouteCounters,
}

/// One limit of a rule.
pub(crate) struct RouteLimit {
    /// Index of the policy in the policy set this rule was built with.
    pub(crate) policy: usize,
    pub(crate) source: KeySource,
    pub(crate) on_missing: OnMissing,
}

/// What identifies the caller for one limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeySource {
    ClientIp,
    Header(HeaderName),
    Path,
    Method,
    Global,
}

impl KeySource {
    /// The forms a `key` may take, for error messages.
    const FORMS: &'static str = "`client_ip`, `header:<name>`, `path`, `method` or `global`";

    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "client_ip" => Self::ClientIp,
            "path" => Self::Path,
            "method" => Self::Method,
            "global" => Self::Global,
            other => {
                let Some(name) = other.strip_prefix("header:") else {
                    return Err(format!("unknown key source `{other}`; use {}", Self::FORMS));
                };
                Self::Header(header_name(name)?)
            }
        })
    }
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("`{name}` is not a valid HTTP header name"))
}

/// A request as the rules see it.
pub(crate) struct RequestView<'a> {
    pub(crate) method: &'a Method,
    /// Normalized (see [`normalize_path`]).
    pub(crate) path: Cow<'a, str>,
    pub(crate) headers: &'a HeaderMap,
}

/// A limit's backend key.
pub(crate) enum LimitKey {
    Client(ClientKey),
    Built(RuleKey),
}

impl LimitKey {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Client(key) => key.as_str(),
            Self::Built(key) => key.as_str(),
        }
    }
}

impl RouteTable {
    /// The rules of `routes`, resolving policy names with `policy_index`; errors name the
    /// rule (`routes[1].limits[0].policy`).
    pub(crate) fn new(
        routes: &[RouteConfig],
        policy_index: impl Fn(&str) -> Option<usize>,
        known_policies: &str,
        metrics: &Metrics,
    ) -> Result<Self, ConfigError> {
        let mut names = HashSet::new();
        let rules = routes
            .iter()
            .enumerate()
            .map(|(index, route)| {
                let field = |rest: &str| format!("routes[{index}].{rest}");
                let invalid = |rest: &str, problem: String| ConfigError::Invalid {
                    field: field(rest),
                    problem,
                };
                let name = route
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("routes[{index}]"));
                if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                    return Err(invalid(
                        "name",
                        "must be 1 to 64 printable characters".into(),
                    ));
                }
                if !names.insert(name.clone()) {
                    return Err(invalid(
                        "name",
                        format!("`{name}` names another rule too"),
                    ));
                }
                let prefix = &route.matches.path_prefix;
                if !prefix.starts_with('/') || prefix.contains(['?', '#']) {
                    return Err(invalid(
                        "match.path_prefix",
                        format!("`{prefix}` must be a path starting with `/`, without `?` or `#`"),
                    ));
                }
                let normalized = normalize_path(prefix);
                if normalized != prefix.as_str() {
                    return Err(invalid(
                        "match.path_prefix",
                        format!(
                            "`{prefix}` is not in normal form (requests are matched as `{normalized}`); write that"
                        ),
                    ));
                }
                let methods = route
                    .matches
                    .methods
                    .iter()
                    .enumerate()
                    .map(|(position, method)| {
                        Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                            invalid(
                                &format!("match.methods[{position}]"),
                                format!("`{method}` is not an HTTP method"),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let header = route
                    .matches
                    .header
                    .as_deref()
                    .map(header_name)
                    .transpose()
                    .map_err(|problem| invalid("match.header", problem))?;
                if route.limits.len() > crate::routes::MAX_LIMITS_PER_RULE {
                    return Err(invalid(
                        "limits",
                        format!(
                            "has {} limits; the most a rule may have is {}",
                            route.limits.len(),
                            crate::routes::MAX_LIMITS_PER_RULE
                        ),
                    ));
                }
                let limits = route
                    .limits
                    .iter()
                    .enumerate()
                    .map(|(position, limit)| {
                        let LimitConfig {
                            policy,
                            key,
                            on_missing,
                        } = limit;
                        let at = |rest: &str| format!("limits[{position}].{rest}");
                        let policy = policy_index(policy).ok_or_else(|| {
                            invalid(
                                &at("policy"),
                                format!(
                                    "unknown policy `{policy}`; defined policies: {known_policies}"
                                ),
                            )
                        })?;
                        let source =
                            KeySource::parse(key).map_err(|problem| invalid(&at("key"), problem))?;
                        Ok(RouteLimit {
                            policy,
                            source,
                            on_missing: *on_missing,
                        })
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?;
                Ok(RouteRule {
                    counters: metrics.route_counters(&name),
                    name,
                    path_prefix: prefix.clone(),
                    methods,
                    header,
                    limits,
                    shadow: route.shadow,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rules,
            unmatched: metrics.route_unmatched(),
            unmatched_upstream: metrics.upstream_counters(""),
        })
    }

    /// The implicit table of a route without `[[routes]]`: one rule for every path.
    pub(crate) fn single(name: &str, policy: usize, source: KeySource, metrics: &Metrics) -> Self {
        Self {
            rules: vec![RouteRule {
                counters: metrics.route_counters(name),
                name: name.to_owned(),
                path_prefix: "/".into(),
                methods: Vec::new(),
                header: None,
                limits: vec![RouteLimit {
                    policy,
                    source,
                    on_missing: OnMissing::Deny,
                }],
                shadow: false,
            }],
            unmatched: metrics.route_unmatched(),
            unmatched_upstream: metrics.upstream_counters(""),
        }
    }

    /// The first rule `request` matches.
    pub(crate) fn find(&self, request: &RequestView<'_>) -> Option<&RouteRule> {
        self.rules.iter().find(|rule| {
            request.path.starts_with(rule.path_prefix.as_str())
                && (rule.methods.is_empty() || rule.methods.contains(request.method))
                && rule
                    .header
                    .as_ref()
                    .is_none_or(|name| request.headers.contains_key(name))
        })
    }

    /// The rules, in order.
    #[cfg(test)]
    fn rules(&self) -> &[RouteRule] {
        &self.rules
    }
}

impl RouteLimit {
    /// The key `request` counts under for this limit; `None` when the source is absent and
    /// the limit is skipped for it. `client` gives the caller's client-IP key, asked only when
    /// this limit needs it.
    pub(crate) fn key(
        &self,
        request: &RequestView<'_>,
        client: impl FnOnce() -> Result<ClientKey, ApiError>,
    ) -> Result<Option<LimitKey>, ApiError> {
        let mut key = KeyBuilder::new();
        let tag = match &self.source {
            KeySource::ClientIp => return client().map(|key| Some(LimitKey::Client(key))),
            KeySource::Global => return Ok(Some(LimitKey::Built(global()))),
            KeySource::Path => {
                key.part(&request.path);
                "path|"
            }
            KeySource::Method => {
                key.part(request.method.as_str());
                "method|"
            }
            KeySource::Header(name) => {
                let value = request.headers.get(name).filter(|value| !value.is_empty());
                let Some(value) = value else {
                    return match self.on_missing {
                        OnMissing::Deny => Err(ApiError::InvalidKeyHeader {
                            header: name.to_string(),
                        }),
                        OnMissing::Skip => Ok(None),
                        OnMissing::Global => Ok(Some(LimitKey::Built(global()))),
                    };
                };
                let value = value
                    .to_str()
                    .ok()
                    .filter(|value| value.len() <= MAX_KEY_LEN)
                    .ok_or_else(|| ApiError::InvalidKeyHeader {
                        header: name.to_string(),
                    })?;
                key.part(name.as_str());
                key.part(value);
                "header|"
            }
        };
        Ok(Some(LimitKey::Built(key.finish(tag))))
    }
}

/// The one key of `global` (and of `on_missing = "global"`).
fn global() -> RuleKey {
    KeyBuilder::new().finish("global")
}

/// `path` as the rules match it: percent-encoded unreserved characters decoded (RFC 3986
/// §6.2.2.2: `%6C` is `l`), runs of `/` merged, `.` and `..` segments resolved (never above the
/// root), a trailing `/` kept. Borrowed when already normal, so the common request costs a
/// scan and no allocation.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    let path = if path.is_empty() { "/" } else { path };
    if is_normal(path) {
        return Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = decoded.ends_with('/');
    for segment in decoded.split('/') {
        match segment {
            "" => {}
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            segment => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    if decoded.ends_with('/') {
        trailing_slash = true;
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &segments {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() || trailing_slash {
        normal.push('/');
    }
    Cow::Owned(normal)
}

/// Whether `path` is already what [`normalize_path`] would make of it.
fn is_normal(path: &str) -> bool {
    path.starts_with('/')
        && !path
            .match_indices('%')
            .any(|(index, _)| unreserved_escape(path, index).is_some())
        && !path.contains("//")
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn decode_unreserved(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| unreserved_escape(path, index))
            .flatten();
        match decoded {
            Some(byte) => {
                out.push(char::from(byte));
                index += 3;
            }
            None => {
                // `path` is a `str`: copy up to the next `%` (a char boundary) whole.
                let next = path[index + 1..]
                    .find('%')
                    .map_or(bytes.len(), |offset| index + 1 + offset);
                out.push_str(&path[index..next]);
                index = next;
            }
        }
    }
    Cow::Owned(out)
}

/// The unreserved character `%XX` at `index` of `path` encodes, if it encodes one.
fn unreserved_escape(path: &str, index: usize) -> Option<u8> {
    path.get(index + 1..index + 3)
        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        .filter(|byte| byte.is_ascii_alphanumeric() || b"-._~".contains(byte))
}

/// The path of a request as its URI (or a proxy's `X-Forwarded-Uri`) gives it: the query and
/// fragment cut off, an absolute URI's scheme and authority dropped.
pub(crate) fn path_of(uri: &str) -> &str {
    let end = uri.find(['?', '#']).unwrap_or(uri.len());
    let uri = &uri[..end];
    match uri.find("://") {
        Some(scheme_end) => {
            let rest = &uri[scheme_end + 3..];
            rest.find('/').map_or("/", |slash| &rest[slash..])
        }
        None => uri,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn paths_are_matched_in_normal_form() {
        for (path, normal) in [
            ("/", "/"),
            ("", "/"),
            ("/login", "/login"),
            ("/%6Cogin", "/login"),
            ("/%6cogin", "/login"),
            ("//login", "/login"),
            ("/a/./b", "/a/b"),
            ("/a/../login", "/login"),
            ("/../../login", "/login"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/api/", "/api/"),
            ("/api//v1//", "/api/v1/"),
            ("/a%2Fb", "/a%2Fb"),
            ("/%2e%2e/login", "/login"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/é/%41", "/é/A"),
            ("/%zz", "/%zz"),
            ("/%4", "/%4"),
        ] {
            assert_eq!(normalize_path(path), normal, "{path}");
            assert!(is_normal(&normalize_path(path)), "{path}");
        }
        assert!(matches!(normalize_path("/login"), Cow::Borrowed(_)));
    }

    #[test]
    fn forwarded_uris_give_their_path() {
        assert_eq!(path_of("/login?next=/"), "/login");
        assert_eq!(path_of("/a#frag"), "/a");
        assert_eq!(path_of("http://example.com/a/b?x"), "/a/b");
        assert_eq!(path_of("https://example.com"), "/");
        assert_eq!(path_of(""), "");
    }

    fn table(toml: &str) -> Result<RouteTable, ConfigError> {
        #[derive(serde::Deserialize)]
        struct Routes {
            routes: Vec<RouteConfig>,
        }
        let routes: Routes = toml::from_str(toml).unwrap();
        let metrics = Metrics::new(turnstile_backend::BackendKind::Concurrent, 1).unwrap();
        RouteTable::new(
            &routes.routes,
            |name| ["default", "login", "api"].iter().position(|p| *p == name),
            "default, login, api",
            &metrics,
        )
    }

    fn find<'t>(table: &'t RouteTable, method: &str, path: &str, header: bool) -> Option<&'t str> {
        let mut headers = HeaderMap::new();
        if header {
            headers.insert("x-api-key", "k".parse().unwrap());
        }
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let view = RequestView {
            method: &method,
            path: normalize_path(path),
            headers: &headers,
        };
        table.find(&view).map(|rule| rule.name.as_str())
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let table = table(
            r#"
            [[routes]]
            name = "login"
            match = { path_prefix = "/login", methods = ["post"] }
            limits = [ { policy = "login", key = "client_ip" } ]
            [[routes]]
            name = "api"
            match = { path_prefix = "/api/", header = "X-Api-Key" }
            limits = [ { policy = "api", key = "header:x-api-key" } ]
            [[routes]]
            match = { path_prefix = "/" }
            limits = []
            "#,
        )
        .unwrap();
        assert_eq!(find(&table, "POST", "/login", false), Some("login"));
        assert_eq!(find(&table, "POST", "/%6cogin", false), Some("login"));
        assert_eq!(find(&table, "GET", "/login", false), Some("routes[2]"));
        assert_eq!(find(&table, "GET", "/api/x", true), Some("api"));
        assert_eq!(find(&table, "GET", "/api/x", false), Some("routes[2]"));
        assert_eq!(find(&table, "GET", "/apix", true), Some("routes[2]"));
        assert_eq!(table.rules()[2].limits.len(), 0);
    }

    #[test]
    fn without_a_catch_all_a_request_can_match_nothing() {
        let table = table(
            r#"
            [[routes]]
            match = { path_prefix = "/login" }
            limits = [ { policy = "login", key = "client_ip" } ]
            "#,
        )
        .unwrap();
        assert_eq!(find(&table, "GET", "/other", false), None);
    }

    #[test]
    fn bad_rules_are_named() {
        for (rules, field, problem) in [
            (
                r#"match = { path_prefix = "/" }
                limits = [ { policy = "nope", key = "client_ip" } ]"#,
                "routes[0].limits[0].policy",
                "unknown policy `nope`",
            ),
            (
                r#"match = { path_prefix = "login" }
                limits = []"#,
                "routes[0].match.path_prefix",
                "must be a path starting with `/`",
            ),
            (
                r#"match = { path_prefix = "/a//b" }
                limits = []"#,
                "routes[0].match.path_prefix",
                "not in normal form",
            ),
            (
                r#"match = { path_prefix = "/" }
                limits = [ { policy = "default", key = "cookie:session" } ]"#,
                "routes[0].limits[0].key",
                "unknown key source `cookie:session`",
            ),
            (
                r#"match = { path_prefix = "/" }
                limits = [ { policy = "default", key = "header:bad header" } ]"#,
                "routes[0].limits[0].key",
                "not a valid HTTP header name",
            ),
            (
                r#"match = { path_prefix = "/", methods = ["GE T"] }
                limits = []"#,
                "routes[0].match.methods[0]",
                "not an HTTP method",
            ),
        ] {
            let error = table(&format!("[[routes]]\n{rules}")).err().expect(field);
            let text = error.to_string();
            assert!(text.contains(field) && text.contains(problem), "{text}");
        }
        let error = table(
            r#"
            [[routes]]
            name = "a"
            match = { path_prefix = "/" }
            limits = []
            [[routes]]
            name = "a"
            match = { path_prefix = "/" }
            limits = []
            "#,
        )
        .err()
        .expect("duplicate names");
        assert!(error.to_string().contains("routes[1].name"), "{error}");
    }

    fn key_of(source: &str, on_missing: OnMissing, headers: &HeaderMap) -> Option<String> {
        let limit = RouteLimit {
            policy: 0,
            source: KeySource::parse(source).unwrap(),
            on_missing,
        };
        let view = RequestView {
            method: &Method::POST,
            path: normalize_path("/a/%62"),
            headers,
        };
        limit
            .key(&view, || Ok(ClientKey::from("10.0.0.1").unwrap()))
            .map_err(|error| error.code())
            .unwrap()
            .map(|key| key.as_str().to_owned())
    }

    #[test]
    fn keys_name_their_source() {
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", "10.0.0.1".parse().unwrap());
        headers.insert("x-other", "10.0.0.1".parse().unwrap());
        let keys: Vec<_> = [
            "client_ip",
            "header:x-api-key",
            "header:X-Other",
            "path",
            "method",
            "global",
        ]
        .into_iter()
        .map(|source| key_of(source, OnMissing::Deny, &headers).unwrap())
        .collect();
        assert_eq!(keys[0], "10.0.0.1");
        assert_eq!(keys[4], "method|4:POST");
        assert_eq!(keys[3], "path|4:/a/b");
        let distinct: HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
    }

    #[test]
    fn a_missing_header_follows_on_missing() {
        let none = HeaderMap::new();
        assert_eq!(key_of("header:x-api-key", OnMissing::Skip, &none), None);
        assert_eq!(
            key_of("header:x-api-key", OnMissing::Global, &none),
            key_of("global", OnMissing::Deny, &none)
        );
        let limit = RouteLimit {
            policy: 0,
            source: KeySource::parse("header:x-api-key").unwrap(),
            on_missing: OnMissing::Deny,
        };
        let view = RequestView {
            method: &Method::GET,
            path: Cow::Borrowed("/"),
            headers: &none,
        };
        let error = limit
            .key(&view, || Ok(ClientKey::new()))
            .err()
            .expect("denied");
        assert!(error.to_string().contains("x-api-key"), "{error}");
        assert_eq!(error.code(), "invalid_key_header");
    }
}
