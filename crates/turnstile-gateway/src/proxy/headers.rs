//! What changes between the client's request and the upstream's, and back.
//!
//! Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and every header it names, `Keep-Alive`,
//! `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) describe one connection and are
//! removed both ways; each side's framing is hyper's. `X-Forwarded-For` gets the peer appended;
//! `X-Forwarded-Proto` and `-Host` are set, kept from the client only when it is a trusted
//! proxy (`trusted_proxies`), since anyone else could write them.

use std::net::IpAddr;

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;

/// Who sent the request, for the `X-Forwarded-*` headers.
pub(crate) struct Forwarded {
    /// The peer's address (appended to `X-Forwarded-For`).
    pub(crate) peer: IpAddr,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-Proto`/`-Host` stand.
    pub(crate) trusted: bool,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The hop-by-hop headers every message loses (besides those `Connection` names).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The protocol a request asks to upgrade to, if it asks for one the proxy would have to
/// follow (`h2c` is only an offer, declined by forwarding the request as it is).
pub(crate) fn upgrade_asked(headers: &HeaderMap) -> Option<String> {
    let upgrade = headers.get(header::UPGRADE)?;
    let protocol = String::from_utf8_lossy(upgrade.as_bytes()).into_owned();
    (!protocol.eq_ignore_ascii_case("h2c")).then_some(protocol)
}

/// The host the client asked for: its `Host`, or an HTTP/2 request's `:authority`.
pub(crate) fn client_host(request: &Parts) -> Option<HeaderValue> {
    request.headers.get(header::HOST).cloned().or_else(|| {
        request
            .uri
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
    })
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// The client's headers made the upstream's.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    forwarded: &Forwarded,
    client_host: Option<&HeaderValue>,
) {
    remove_hop_by_hop(headers);
    let mut chain = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    chain.push_str(&forwarded.peer.to_string());
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR, value);
    }
    if !forwarded.trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        // The gateway's listener speaks plain HTTP.
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if !forwarded.trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match client_host {
            Some(host) => headers.insert(X_FORWARDED_HOST, host.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

/// The upstream's headers made the client's.
pub(crate) fn from_upstream(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic eA=="),
            ("upgrade", "h2c"),
            ("x-end-to-end", "kept"),
            ("content-length", "3"),
        ]);
        from_upstream(&mut map);
        let names: Vec<_> = map.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-end-to-end", "content-length"]);
    }

    #[test]
    fn forwarding_headers_are_appended_or_set() {
        let untrusted = Forwarded {
            peer: "10.0.0.9".parse().unwrap(),
            trusted: false,
        };
        let host = HeaderValue::from_static("app.example");
        let mut map = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        to_upstream(&mut map, &untrusted, Some(&host));
        assert_eq!(map["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(map["x-forwarded-proto"], "http");
        assert_eq!(map["x-forwarded-host"], "app.example");

        let trusted = Forwarded {
            trusted: true,
            ..untrusted
        };
        let mut map = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "edge.example"),
        ]);
        to_upstream(&mut map, &trusted, Some(&host));
        assert_eq!(map["x-forwarded-for"], "10.0.0.9");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "edge.example");
    }

    #[test]
    fn only_real_upgrades_are_asked() {
        assert_eq!(
            upgrade_asked(&headers(&[("upgrade", "websocket")])).as_deref(),
            Some("websocket")
        );
        assert_eq!(upgrade_asked(&headers(&[("upgrade", "h2c")])), None);
        assert_eq!(upgrade_asked(&HeaderMap::new()), None);
    }
}
