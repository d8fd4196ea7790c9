//! [`RedisUrl`]: a Redis connection URL whose password never reaches a log line.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A `redis://[user:password@]host:port[/db]` URL, or in cluster mode a comma-separated list
/// of them. `Debug` and `Display` hide the password, so the configuration can be logged and
/// an error can quote the URL; [`RedisUrl::expose`] is the one way to read it whole.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as written, password included: for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The seed nodes: the comma-separated URLs, trimmed (one, unless this is a cluster's list).
    pub fn seeds(&self) -> impl Iterator<Item = &str> {
        self.0.split(',').map(str::trim)
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> Cow<'_, str> {
        redact_password(&self.0)
    }
}

impl From<&str> for RedisUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl From<String> for RedisUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Each of a comma-separated list redacted as [`redact_one`] does.
fn redact_password(urls: &str) -> Cow<'_, str> {
    if !urls.contains(',') {
        return redact_one(urls);
    }
    let redacted: Vec<Cow<'_, str>> = urls.split(',').map(redact_one).collect();
    if redacted.iter().all(|url| matches!(url, Cow::Borrowed(_))) {
        Cow::Borrowed(urls)
    } else {
        Cow::Owned(redacted.join(","))
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`, and `scheme://secret@host` (Redis's
/// password-only form) → `scheme://***@host`. Written by hand rather than with the `url` crate
/// because a malformed URL, the very one an error message quotes, must be redacted too.
fn redact_one(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    // The userinfo ends at the last '@' before the host's path, query or fragment.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Cow::Borrowed(url);
    };
    let userinfo = &rest[..at];
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:"),
        None => String::new(),
    };
    Cow::Owned(format!("{scheme}://{user}***{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_and_everything_else_is_kept() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
            (
                "redis://app:hunter2@redis:6379",
                "redis://app:***@redis:6379",
            ),
            ("rediss://hunter2@redis", "rediss://***@redis"),
            ("redis://a:p@ss@host/db?x=@", "redis://a:***@host/db?x=@"),
            ("not a url", "not a url"),
            (
                "redis://:s3@10.0.0.1:7000, redis://10.0.0.2:7000,redis://u:s3@h:7000",
                "redis://:***@10.0.0.1:7000, redis://10.0.0.2:7000,redis://u:***@h:7000",
            ),
            (
                "redis://a:7000,redis://b:7000",
                "redis://a:7000,redis://b:7000",
            ),
        ];
        for (url, shown) in cases {
            let url = RedisUrl::from(url);
            assert_eq!(url.to_string(), shown);
            assert_eq!(format!("{url:?}"), format!("{shown:?}"));
            assert!(!format!("{url:?}").contains("hunter2"));
            assert!(!format!("{url:?}").contains("s3@"));
        }
    }
}
