//! Who the client is: the TCP peer, unless the peer is a trusted proxy.
//!
//! `X-Forwarded-For` and `Forwarded` are lists that every proxy *appends* to, so only their
//! right-hand end is written by proxies we trust; the left-most entries are whatever the client
//! sent and can be forged. Walking from the right, every entry added by a trusted proxy is
//! skipped, and the first address that is not a trusted proxy is the client.

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use arrayvec::ArrayString;
use axum::http::HeaderMap;
use ipnet::{IpNet, Ipv6Net};

/// Long enough for any IPv6 address with a `/prefix` suffix.
pub(crate) type ClientKey = ArrayString<64>;

/// Resolves the client address of a request and turns it into a rate-limit key.
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    ipv6_prefix_len: u8,
}

impl ClientIpResolver {
    /// Trusts the forwarding headers of peers in `trusted`; groups IPv6 clients by
    /// `ipv6_prefix_len` bits (1 to 128).
    pub fn new(trusted: Vec<IpNet>, ipv6_prefix_len: u8) -> Self {
        Self {
            trusted,
            ipv6_prefix_len: ipv6_prefix_len.clamp(1, 128),
        }
    }

    pub(crate) fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip().to_canonical();
        if !self.is_trusted(peer) {
            return peer;
        }
        let mut nearest = peer;
        let forwarded_for = headers.get_all("x-forwarded-for");
        let hops: Vec<Option<IpAddr>> = if forwarded_for.iter().next().is_some() {
            forwarded_for
                .iter()
                .flat_map(|value| value.to_str().unwrap_or("").split(','))
                .map(parse_hop)
                .collect()
        } else {
            headers
                .get_all("forwarded")
                .iter()
                .flat_map(|value| value.to_str().unwrap_or("").split(','))
                .map(forwarded_for_parameter)
                .collect()
        };
        for hop in hops.into_iter().rev() {
            match hop {
                Some(ip) if self.is_trusted(ip) => nearest = ip,
                Some(ip) => return ip,
                // An entry a trusted proxy wrote but that names no address ("unknown", an
                // obfuscated id, garbage): the chain cannot be followed past it, and the last
                // address we could verify is the best identification there is.
                None => return nearest,
            }
        }
        // Every hop was a trusted proxy: the left-most is the origin as far as anyone knows.
        nearest
    }

    /// The rate-limit key for a client address: the address itself, or its IPv6 prefix, since
    /// a single subscriber usually controls a whole /64.
    pub(crate) fn key_for(&self, ip: IpAddr) -> ClientKey {
        let mut key = ClientKey::new();
        // Writing an address into 64 bytes cannot fail; the longest IPv6 text plus "/128" is 49.
        let _ = match ip {
            IpAddr::V4(v4) => write!(key, "{v4}"),
            IpAddr::V6(v6) if self.ipv6_prefix_len < 128 => {
                let network = Ipv6Net::new(v6, self.ipv6_prefix_len)
                    .map(|net| net.trunc().addr())
                    .unwrap_or(Ipv6Addr::UNSPECIFIED);
                write!(key, "{network}/{}", self.ipv6_prefix_len)
            }
            IpAddr::V6(v6) => write!(key, "{v6}"),
        };
        key
    }
}

/// Parses one `X-Forwarded-For` entry: an address, optionally with a port.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

/// Extracts the address from one `Forwarded` element's `for=` parameter (RFC 7239).
fn forwarded_for_parameter(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let value = value.trim().trim_matches('"');
        // `for="[2001:db8::1]:4711"` or `for="[2001:db8::1]"`.
        let value = match value.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => value,
        };
        parse_hop(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn resolver(trusted: &[&str]) -> ClientIpResolver {
        ClientIpResolver::new(trusted.iter().map(|n| n.parse().unwrap()).collect(), 64)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 5555)
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        let resolver = resolver(&[]);
        let spoofed = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(
            resolver.client_ip(peer("203.0.113.9"), &spoofed),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
        let resolver = resolver(&["10.0.0.0/8"]);
        // The client forged "6.6.6.6"; the proxy appended what it really saw.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]);
        assert_eq!(
            resolver.client_ip(peer("10.0.0.2"), &chain),
            ip("198.51.100.7")
        );
        // Two trusted hops, across two header lines.
        let chain = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(
            resolver.client_ip(peer("10.0.0.2"), &chain),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_or_unknown_hops_stop_the_walk_at_the_last_verified_address() {
        let resolver = resolver(&["10.0.0.0/8"]);
        let chain = headers(&[("x-forwarded-for", "198.51.100.7, not-an-ip, 10.9.9.9")]);
        assert_eq!(resolver.client_ip(peer("10.0.0.2"), &chain), ip("10.9.9.9"));
        // A client cannot use garbage to hide: its own entries are left of the real one.
        let chain = headers(&[("x-forwarded-for", "garbage, 198.51.100.7")]);
        assert_eq!(
            resolver.client_ip(peer("10.0.0.2"), &chain),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_hops_yield_the_left_most() {
        let resolver = resolver(&["10.0.0.0/8"]);
        let chain = headers(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2")]);
        assert_eq!(resolver.client_ip(peer("10.0.0.2"), &chain), ip("10.3.3.3"));
        assert_eq!(
            resolver.client_ip(peer("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_header_with_ports_quotes_and_ipv6() {
        let resolver = resolver(&["127.0.0.1/32"]);
        let chain = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#,
        )]);
        assert_eq!(
            resolver.client_ip(peer("127.0.0.1"), &chain),
            ip("2001:db8::1")
        );
        let chain = headers(&[("forwarded", "for=192.0.2.60:8080;by=10.0.0.1")]);
        assert_eq!(
            resolver.client_ip(peer("127.0.0.1"), &chain),
            ip("192.0.2.60")
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_ipv4_and_ipv6_clients_share_their_prefix() {
        let resolver = resolver(&[]);
        let mapped = peer("::ffff:192.0.2.1");
        assert_eq!(
            resolver.client_ip(mapped, &HeaderMap::new()),
            ip("192.0.2.1")
        );
        assert_eq!(resolver.key_for(ip("192.0.2.1")).as_str(), "192.0.2.1");
        let a = resolver.key_for(ip("2001:db8:1:2:aaaa::1"));
        let b = resolver.key_for(ip("2001:db8:1:2:bbbb::9"));
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "2001:db8:1:2::/64");
        let full = ClientIpResolver::new(Vec::new(), 128);
        assert_eq!(full.key_for(ip("2001:db8::1")).as_str(), "2001:db8::1");
    }
}
