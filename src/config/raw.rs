//! The config file as written: serde structs that mirror `exporter.yml` for every target type.
//!
//! Unknown keys are errors everywhere (a typo must not silently disable a check), and values
//! that validation may need to point at carry their line and column (`Spanned`). `type` is a
//! plain field with optional per-type tables, not an internally tagged enum, because tagged
//! enums lose the locations.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::duration::ConfigDuration;
use crate::net::IpVersion;
use crate::net::dns::Transport;
use crate::probe::http::StatusCodes;
use crate::probe::tcp::starttls::Dialect;
use crate::tls::{TlsVersion, Trust};

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub location: Option<S<String>>,
    pub labels: Option<S<BTreeMap<String, String>>>,
    pub defaults: Option<S<RawDefaults>>,
    pub max_concurrent_probes: Option<S<i64>>,
    #[serde(default)]
    pub targets: Vec<S<RawTarget>>,
}

/// The settings every target inherits unless it sets them itself; `RawTarget` repeats these
/// fields because `#[serde(flatten)]` would lose both `deny_unknown_fields` and the locations.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub interval: Option<S<ConfigDuration>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub retries: Option<S<i64>>,
    pub retry_delay: Option<S<ConfigDuration>>,
    pub interval_on_failure: Option<S<ConfigDuration>>,
    pub ip_version: Option<S<IpVersion>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Icmp,
    Tcp,
    Http,
    Dns,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Icmp => "icmp",
            Kind::Tcp => "tcp",
            Kind::Http => "http",
            Kind::Dns => "dns",
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: S<String>,
    #[serde(rename = "type")]
    pub kind: S<Kind>,
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub url: Option<S<String>>,
    pub interval: Option<S<ConfigDuration>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub retries: Option<S<i64>>,
    pub retry_delay: Option<S<ConfigDuration>>,
    pub interval_on_failure: Option<S<ConfigDuration>>,
    pub ip_version: Option<S<IpVersion>>,
    pub labels: Option<S<BTreeMap<String, String>>>,
    pub locations: Option<S<Vec<String>>>,
    pub tcp: Option<Box<S<RawTcp>>>,
    pub tls: Option<Box<S<RawTls>>>,
    pub http: Option<Box<S<RawHttp>>>,
    pub icmp: Option<Box<S<RawIcmp>>>,
    pub dns: Option<Box<S<RawDns>>>,
    pub assertions: Option<S<Vec<RawAssertion>>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    pub send: Option<S<String>>,
    pub expect: Option<S<String>>,
    pub hold: Option<S<ConfigDuration>>,
    pub steps: Option<S<Vec<S<RawStep>>>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub send: Option<S<String>>,
    pub expect: Option<S<String>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub verify: Option<bool>,
    pub server_name: Option<S<String>>,
    pub skip_hostname_verify: Option<bool>,
    pub min_version: Option<S<TlsVersion>>,
    pub ca_file: Option<S<String>>,
    pub trust: Option<S<Trust>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub alert_before_expiry: Option<S<ConfigDuration>>,
    pub starttls: Option<S<Dialect>>,
}

/// A header value given inline, or read from a file (for tokens that must not sit in the config).
#[derive(Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawHeaderValue {
    Value(String),
    File(RawFileRef),
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileRef {
    pub file: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub method: Option<S<String>>,
    pub headers: Option<S<BTreeMap<String, S<RawHeaderValue>>>>,
    pub body: Option<S<String>>,
    /// Codes (`200`) or inclusive ranges (`"200-299"`).
    pub valid_status_codes: Option<S<Vec<S<StatusCodes>>>>,
    pub body_regex: Option<S<String>>,
    pub body_not_regex: Option<S<String>>,
    /// Bytes (`1048576`) or with a binary unit (`"1MiB"`).
    pub body_size_limit: Option<S<ByteSize>>,
    pub follow_redirects: Option<bool>,
    pub http2: Option<S<bool>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawIcmp {
    pub count: Option<S<i64>>,
    pub max_loss_ratio: Option<S<f64>>,
    pub payload_size: Option<S<i64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Mx,
    Txt,
    Ns,
    Soa,
    Ptr,
    Srv,
    Caa,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `host:port` of the server to ask; on tcp and http targets, the resolver to use.
    pub server: Option<S<String>>,
    pub record_type: Option<S<RecordType>>,
    pub transport: Option<S<Transport>>,
    pub expect_addresses: Option<S<Vec<IpAddr>>>,
    pub expect_regex: Option<S<String>>,
    pub valid_rcodes: Option<S<Vec<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AssertionKind {
    Connection,
    ResponseTime,
    CertificateExpiry,
    TlsVersion,
}

impl AssertionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AssertionKind::Connection => "connection",
            AssertionKind::ResponseTime => "response_time",
            AssertionKind::CertificateExpiry => "certificate_expiry",
            AssertionKind::TlsVersion => "tls_version",
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAssertion {
    #[serde(rename = "type")]
    pub kind: S<AssertionKind>,
    pub status: Option<S<String>>,
    pub less_than: Option<S<ConfigDuration>>,
    pub greater_than: Option<S<ConfigDuration>>,
    #[serde(rename = "in")]
    pub one_of: Option<S<Vec<TlsVersion>>>,
}

/// A size in bytes: a bare number of bytes, or a number with B, KiB, MiB or GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let invalid = || format!("invalid size {text:?}: write bytes, or use B, KiB, MiB or GiB");
        let number: u64 = text[..digits].parse().map_err(|_| invalid())?;
        let scale = match text[digits..].trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(invalid()),
        };
        number
            .checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl From<RecordType> for hickory_proto::rr::RecordType {
    fn from(r: RecordType) -> Self {
        use hickory_proto::rr::RecordType as T;
        match r {
            RecordType::A => T::A,
            RecordType::Aaaa => T::AAAA,
            RecordType::Cname => T::CNAME,
            RecordType::Mx => T::MX,
            RecordType::Txt => T::TXT,
            RecordType::Ns => T::NS,
            RecordType::Soa => T::SOA,
            RecordType::Ptr => T::PTR,
            RecordType::Srv => T::SRV,
            RecordType::Caa => T::CAA,
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => Ok(ByteSize(bytes)),
            Written::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_binary_units() {
        assert_eq!(ByteSize::parse("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("512 KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("100"), Ok(ByteSize(100)));
        assert!(ByteSize::parse("1MB").is_err());
        assert!(ByteSize::parse("lots").is_err());
    }
}
