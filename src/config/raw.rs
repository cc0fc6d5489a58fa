//! The config file as written: serde structs that mirror `exporter.yml`. The per-type tables
//! (`tcp`, `tls`, `http`, `dns`, `icmp`) are defined beside their builders, in the probe
//! types' folders and in `tls`.
//!
//! Unknown keys are errors everywhere (a typo must not silently disable a check), and values
//! that validation may need to point at carry their line and column (`S`, from `build::span`).
//! `type` is a plain field with optional per-type tables, not an internally tagged enum,
//! because tagged enums lose the locations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::allow::RawAllow;
use super::endpoint::{RawAuthorization, RawBasicAuth};

use super::names::RawLabels;
use super::remote_write::raw::RawRemoteWrite;
use crate::build::S;
use crate::duration::ConfigDuration;
use crate::net::IpVersion;
use crate::probe::dns::config::RawDns;
use crate::probe::http::config::RawHttp;
use crate::probe::icmp::config::RawIcmp;
use crate::probe::tcp::config::RawTcp;
use crate::probe::{Addresses, Kind};
use crate::tls::TlsVersion;
use crate::tls::config::RawTls;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub location: Option<S<String>>,
    pub labels: Option<RawLabels>,
    pub defaults: Option<S<RawDefaults>>,
    /// Named probe settings that targets reference with `module:`, and that `/probe` runs.
    #[serde(default)]
    pub modules: BTreeMap<String, S<RawModule>>,
    pub max_concurrent_probes: Option<S<i64>>,
    pub failure_reasons: Option<FailureReasons>,
    /// Boxed, so that a list of a million grows by moving pointers, and each entry can be
    /// freed once built.
    #[serde(default)]
    pub targets: Vec<S<Box<RawTarget>>>,
    #[serde(default)]
    pub remote_write: Vec<S<RawRemoteWrite>>,
    /// Where more targets come from: Prometheus' file SD and HTTP SD formats.
    #[serde(default)]
    pub target_sources: Vec<S<RawSource>>,
}

/// Which series of `probe_failures_total` a target has (the top-level `failure_reasons`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureReasons {
    /// One for every reason the target can fail with, at 0 until it does, so that `increase()`
    /// sees a reason's first failure.
    #[default]
    Possible,
    /// Only the reasons it has failed with: at 100,000 targets the zeros are a million series
    /// in every scrape and in Prometheus, and `probe_runs_total{result="failure"}`, always
    /// there, still counts every first failure.
    Seen,
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
    pub addresses: Option<S<Addresses>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub name: S<String>,
    /// Required unless a `module` gives it.
    #[serde(rename = "type")]
    pub kind: Option<S<Kind>>,
    pub module: Option<S<String>>,
    pub host: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub url: Option<S<String>>,
    pub interval: Option<S<ConfigDuration>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub retries: Option<S<i64>>,
    pub retry_delay: Option<S<ConfigDuration>>,
    pub interval_on_failure: Option<S<ConfigDuration>>,
    pub ip_version: Option<S<IpVersion>>,
    pub addresses: Option<S<Addresses>>,
    pub labels: Option<RawLabels>,
    pub locations: Option<S<Vec<String>>>,
    pub tcp: Option<Box<S<RawTcp>>>,
    pub tls: Option<Box<S<RawTls>>>,
    pub http: Option<Box<S<RawHttp>>>,
    pub icmp: Option<Box<S<RawIcmp>>>,
    pub dns: Option<Box<S<RawDns>>>,
    pub assertions: Option<S<Vec<RawAssertion>>>,
}

/// A module: what a target of its type says about how to probe, without where. `host` is for
/// dns modules only (the name asked), since `/probe`'s target is then the server.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    #[serde(rename = "type")]
    pub kind: S<Kind>,
    pub host: Option<S<String>>,
    pub interval: Option<S<ConfigDuration>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub retries: Option<S<i64>>,
    pub retry_delay: Option<S<ConfigDuration>>,
    pub interval_on_failure: Option<S<ConfigDuration>>,
    pub ip_version: Option<S<IpVersion>>,
    pub addresses: Option<S<Addresses>>,
    pub tcp: Option<Box<S<RawTcp>>>,
    pub tls: Option<Box<S<RawTls>>>,
    pub http: Option<Box<S<RawHttp>>>,
    pub icmp: Option<Box<S<RawIcmp>>>,
    pub dns: Option<Box<S<RawDns>>>,
    pub assertions: Option<S<Vec<RawAssertion>>>,
    /// Who `/probe` may reach with this module; without it, `/probe` refuses the module.
    pub allow: Option<S<RawAllow>>,
}

/// A `target_sources` entry.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub name: S<String>,
    pub file_sd: Option<S<RawFileSd>>,
    pub http_sd: Option<S<RawHttpSd>>,
    /// The module every discovered target runs, unless its group names another.
    pub module: Option<S<String>>,
    /// A module written in place, for a source whose targets share it with no one else.
    pub template: Option<Box<S<RawModule>>>,
    pub max_targets: Option<S<i64>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileSd {
    pub files: S<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpSd {
    pub url: S<String>,
    pub refresh_interval: Option<S<ConfigDuration>>,
    pub timeout: Option<S<ConfigDuration>>,
    pub headers: Option<S<BTreeMap<String, S<String>>>>,
    pub basic_auth: Option<S<RawBasicAuth>>,
    pub authorization: Option<S<RawAuthorization>>,
    pub tls: Option<S<RawTls>>,
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
