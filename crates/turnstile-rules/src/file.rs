//! The YAML wire types of an envoyproxy/ratelimit configuration file.
//!
//! Every struct denies unknown fields: a misspelled `requests_per_unit` must fail the load,
//! not silently leave a descriptor unlimited. Scalars are read as envoyproxy/ratelimit's Go
//! YAML reads them into strings (`value: 404` is the string `"404"`), and a field written with
//! no value (`descriptors:`) is its default, so its files load unchanged.

use serde::{Deserialize, Deserializer};

/// One file: one domain.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRoot {
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) domain: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) descriptors: Vec<FileDescriptor>,
}

/// One node of the descriptor tree.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDescriptor {
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) key: String,
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) value: String,
    #[serde(default)]
    pub(crate) rate_limit: Option<FileRateLimit>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) descriptors: Vec<FileDescriptor>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) shadow_mode: bool,
    /// With a wildcard `value`: every value it matches shares one counter.
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) share_threshold: bool,
    /// envoyproxy/ratelimit's per-value statistics: accepted, ignored (values are never labels).
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) detailed_metric: bool,
    /// As `detailed_metric`.
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) value_to_metric: bool,
}

/// A descriptor's `rate_limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileRateLimit {
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) requests_per_unit: u32,
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) unit: String,
    #[serde(default)]
    pub(crate) unit_multiplier: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) unlimited: bool,
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(crate) replaces: Vec<FileReplaces>,
    /// Turnstile's extension: GCRA's burst (default `requests_per_unit`).
    #[serde(default)]
    pub(crate) burst: Option<u32>,
}

/// One entry of `replaces`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileReplaces {
    #[serde(default, deserialize_with = "scalar")]
    pub(crate) name: String,
}

/// `T`, with an explicit YAML null read as `T::default()`.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string from any YAML scalar (null is the empty string), as Go's YAML reads one.
fn scalar<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct ScalarVisitor;

    impl serde::de::Visitor<'_> for ScalarVisitor {
        type Value = String;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a string")
        }

        fn visit_str<E>(self, value: &str) -> Result<String, E> {
            Ok(value.to_owned())
        }

        fn visit_string<E>(self, value: String) -> Result<String, E> {
            Ok(value)
        }

        fn visit_bool<E>(self, value: bool) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_i64<E>(self, value: i64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_u64<E>(self, value: u64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_f64<E>(self, value: f64) -> Result<String, E> {
            Ok(value.to_string())
        }

        fn visit_unit<E>(self) -> Result<String, E> {
            Ok(String::new())
        }

        fn visit_none<E>(self) -> Result<String, E> {
            Ok(String::new())
        }
    }

    deserializer.deserialize_any(ScalarVisitor)
}
