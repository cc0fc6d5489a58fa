//! The `tls` table of tcp and http targets: its raw form, and the options and client built
//! from it. Files (CA, client certificate and key) are read here, so that a missing one fails
//! the load (or the reload) instead of every run.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::dialect::Dialect;
use super::{
    ClientCertFiles, KeyExchange, OptionKey, TlsClient, TlsOptions, TlsTarget, TlsVersion, Trust,
};
use crate::build::{Context, Location, S};
use crate::duration::ConfigDuration;
use crate::net::Host;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub verify: Option<bool>,
    pub server_name: Option<S<String>>,
    pub skip_hostname_verify: Option<bool>,
    pub min_version: Option<S<TlsVersion>>,
    pub key_exchange: Option<S<KeyExchange>>,
    pub ca_file: Option<S<String>>,
    pub trust: Option<S<Trust>>,
    pub cert_file: Option<S<String>>,
    pub key_file: Option<S<String>>,
    pub alert_before_expiry: Option<S<ConfigDuration>>,
    pub starttls: Option<S<Dialect>>,
}

/// The `tls` table: `Some(None)` when TLS is off, `None` after reporting errors. Files are
/// read here, so a missing CA or key fails the load (or the reload) instead of every run.
pub fn target(
    cx: &mut Context,
    raw: &S<RawTls>,
    host: &Host,
    path: &str,
) -> Option<Option<TlsTarget>> {
    let Some(options) = options(cx, raw, path)? else {
        return Some(None);
    };
    client_target(cx, options, Some(raw), raw.referenced, host, path).map(Some)
}

/// The `tls` table's options: `Some(None)` when TLS is off, `None` after reporting errors.
pub fn options(cx: &mut Context, raw: &S<RawTls>, path: &str) -> Option<Option<TlsOptions>> {
    let tls = &raw.value;
    if tls.enabled == Some(false) {
        return Some(None);
    }
    let client_cert = match (&tls.cert_file, &tls.key_file) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(ClientCertFiles {
            cert_file: cx.relative(&cert.value),
            key_file: cx.relative(&key.value),
        }),
        (Some(given), None) | (None, Some(given)) => {
            let missing = if tls.cert_file.is_some() {
                "key_file"
            } else {
                "cert_file"
            };
            cx.error(
                &given.referenced,
                format!("{path}.{missing}"),
                "cert_file and key_file go together: a client certificate needs its key",
            );
            return None;
        }
    };
    let alert_before_expiry = tls.alert_before_expiry.as_ref().map(|d| d.value.0);
    if let Some(d) = &tls.alert_before_expiry
        && d.value.0.is_zero()
    {
        cx.error(
            &d.referenced,
            format!("{path}.alert_before_expiry"),
            "must be longer than 0s; leave it out for no expiry alert",
        );
        return None;
    }
    let defaults = TlsOptions::default();
    let options = TlsOptions {
        verify: tls.verify.unwrap_or(defaults.verify),
        server_name: tls.server_name.as_ref().map(|n| n.value.clone()),
        skip_hostname_verify: tls
            .skip_hostname_verify
            .unwrap_or(defaults.skip_hostname_verify),
        min_version: tls
            .min_version
            .as_ref()
            .map_or(defaults.min_version, |v| v.value),
        key_exchange: tls
            .key_exchange
            .as_ref()
            .map_or(defaults.key_exchange, |k| k.value),
        trust: tls.trust.as_ref().map_or(defaults.trust, |t| t.value),
        ca_file: tls.ca_file.as_ref().map(|f| cx.relative(&f.value)),
        client_cert,
        alert_before_expiry,
        alpn: Vec::new(),
    };
    Some(Some(options))
}

/// The TLS client for `options`, named for `host`. Build errors point at the option of
/// the `raw` table they concern, or at `at`.
pub fn client_target(
    cx: &mut Context,
    options: TlsOptions,
    raw: Option<&S<RawTls>>,
    at: Location,
    host: &Host,
    path: &str,
) -> Option<TlsTarget> {
    let client = match TlsClient::build(options, &mut |p| cx.read_file(p)) {
        Ok(client) => Arc::new(client),
        Err(e) => {
            let field =
                |f: fn(&RawTls) -> Option<Location>| raw.and_then(|r| f(&r.value)).unwrap_or(at);
            let (key, field) = match e.key {
                OptionKey::ServerName => (
                    "server_name",
                    field(|t| t.server_name.as_ref().map(|f| f.referenced)),
                ),
                OptionKey::Trust => ("trust", field(|t| t.trust.as_ref().map(|f| f.referenced))),
                OptionKey::CaFile => (
                    "ca_file",
                    field(|t| t.ca_file.as_ref().map(|f| f.referenced)),
                ),
                OptionKey::CertFile => (
                    "cert_file",
                    field(|t| t.cert_file.as_ref().map(|f| f.referenced)),
                ),
                OptionKey::KeyFile => (
                    "key_file",
                    field(|t| t.key_file.as_ref().map(|f| f.referenced)),
                ),
            };
            cx.error(&field, format!("{path}.{key}"), e.message);
            return None;
        }
    };
    match client.target(host) {
        Ok(target) => Some(target),
        Err(message) => {
            cx.error(&at, path, message);
            None
        }
    }
}
