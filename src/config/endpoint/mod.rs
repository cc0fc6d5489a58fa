//! What vantage needs to talk HTTP to a server of its own choosing (a `remote_write` receiver, an
//! `http_sd` source): the URL, TLS, the `Authorization` header from `basic_auth` or
//! `authorization`, extra `headers` and a timeout, validated once per load.
//!
//! Credentials are read here, once per load, like every file the config names, so a missing
//! one fails the load (or the reload) instead of every request; they never reach a log or a
//! label.

use std::collections::BTreeMap;
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};

use crate::build::{Context, Location, S};
use crate::duration::{self, ConfigDuration};
use crate::net::Host;
use crate::tls::TlsTarget;
use crate::tls::config::{self as tls_config, RawTls};
use auth::authorization;
pub use auth::{RawAuthorization, RawBasicAuth};

mod auth;

/// The longest `timeout` taken.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// A server to send requests to, validated.
#[derive(Clone)]
pub struct Endpoint {
    pub url: Uri,
    /// The URL without its query, for labels and the log: a query may carry a token.
    pub shown_url: String,
    pub host: Host,
    pub port: u16,
    /// Set for `https` URLs.
    pub tls: Option<TlsTarget>,
    pub timeout: Duration,
    /// `headers`, then `Authorization` when `basic_auth` or `authorization` is set (marked
    /// sensitive, so that no debug output shows it).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Endpoint {
    /// Adds `Host` (the URL's authority) and the configured headers to a request's.
    pub fn add_headers(&self, headers: &mut http::HeaderMap) {
        if let Some(authority) = self.url.authority()
            && let Ok(host) = HeaderValue::try_from(authority.as_str())
        {
            headers.insert(header::HOST, host);
        }
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The keys of an entry that say how to reach its server, as written.
pub struct RawEndpoint<'r> {
    pub url: &'r S<String>,
    pub timeout: Option<&'r S<ConfigDuration>>,
    pub headers: Option<&'r S<BTreeMap<String, S<String>>>>,
    pub basic_auth: Option<&'r S<RawBasicAuth>>,
    pub authorization: Option<&'r S<RawAuthorization>>,
    pub tls: Option<&'r S<RawTls>>,
}

/// Builds the endpoint of the entry at `path` (written at `entry`), reporting every mistake;
/// `example` is a URL of the kind expected, for the message about a URL without a scheme.
pub fn build(
    cx: &mut Context,
    raw: &RawEndpoint,
    path: &str,
    entry: Location,
    (default_timeout, example): (Duration, &str),
) -> Option<Endpoint> {
    let errors_before = cx.error_count();
    let url = parse_url(cx, raw.url, path, example);
    let timeout = bounded_duration(cx, raw.timeout, path, "timeout", default_timeout);
    let mut headers = headers(cx, raw.headers, path);
    let authorization = authorization(cx, raw.basic_auth, raw.authorization, path, entry);
    let tls = match (&url, raw.tls) {
        (Some(u), tls) if u.https => tls_target(cx, tls, &u.host, entry, path),
        (Some(_), Some(tls)) => {
            cx.error(
                &tls.referenced,
                format!("{path}.tls"),
                "the url is http://: tls applies only to https:// servers",
            );
            None
        }
        _ => None,
    };
    if cx.error_count() > errors_before {
        return None;
    }
    let url = url?;
    headers.extend(authorization?);
    Some(Endpoint {
        shown_url: url.shown,
        host: url.host,
        port: url.port,
        url: url.uri,
        tls: if url.https { Some(tls?) } else { None },
        timeout,
        headers,
    })
}

struct ParsedUrl {
    uri: Uri,
    shown: String,
    host: Host,
    port: u16,
    https: bool,
}

fn parse_url(cx: &mut Context, raw: &S<String>, path: &str, example: &str) -> Option<ParsedUrl> {
    let key = format!("{path}.url");
    let refuse = |cx: &mut Context, message: String| {
        cx.error(&raw.referenced, &key, message);
        None
    };
    let uri: Uri = match raw.value.parse() {
        Ok(uri) => uri,
        Err(e) => return refuse(cx, format!("not a URL: {e}")),
    };
    let https = match uri.scheme() {
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        _ => {
            return refuse(
                cx,
                format!("must start with http:// or https://, as {example}"),
            );
        }
    };
    let Some(authority) = uri.authority() else {
        return refuse(cx, "names no host".into());
    };
    if authority.as_str().contains('@') {
        return refuse(
            cx,
            "carries credentials: put them in basic_auth, where they stay out of logs and labels"
                .into(),
        );
    }
    let host = match Host::parse(authority.host()) {
        Ok(host) => host,
        Err(e) => return refuse(cx, e),
    };
    if let Err(e) = host.check_destination() {
        return refuse(cx, e);
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let scheme = if https { "https" } else { "http" };
    let shown = format!("{scheme}://{authority}{}", uri.path());
    Some(ParsedUrl {
        uri,
        shown,
        host,
        port,
        https,
    })
}

pub(crate) fn bounded_duration(
    cx: &mut Context,
    raw: Option<&S<ConfigDuration>>,
    path: &str,
    key: &str,
    default: Duration,
) -> Duration {
    let Some(d) = raw else {
        return default;
    };
    if d.value.0.is_zero() || d.value.0 > MAX_DURATION {
        cx.error(
            &d.referenced,
            format!("{path}.{key}"),
            format!(
                "must be longer than 0s and at most {}, not {}",
                duration::format(MAX_DURATION),
                duration::format(d.value.0)
            ),
        );
    }
    d.value.0
}

/// Headers a `headers` entry must not set: those the protocol and the HTTP connection set
/// themselves (the remote write spec's and HTTP SD's reserved ones, and hop-by-hop ones), and credentials,
/// which have keys of their own.
const RESERVED: [&str; 17] = [
    "host",
    "content-type",
    "content-encoding",
    "content-length",
    "transfer-encoding",
    "user-agent",
    "x-prometheus-remote-write-version",
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "www-authenticate",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "expect",
    "accept-encoding",
];

fn headers(
    cx: &mut Context,
    raw: Option<&S<BTreeMap<String, S<String>>>>,
    path: &str,
) -> Vec<(HeaderName, HeaderValue)> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for (name, value) in &raw.value {
        let key = format!("{path}.headers.{name}");
        // The key itself carries no place; its value is on the same line in either style.
        let at = &value.referenced;
        let Ok(header) = HeaderName::try_from(name.as_str()) else {
            cx.error(at, key, "is not a valid HTTP header name");
            continue;
        };
        if RESERVED.contains(&header.as_str()) {
            let hint = if header == header::AUTHORIZATION {
                ": use basic_auth or authorization, which read the secret from a file and keep \
                 it out of any output"
            } else {
                ": the protocol or HTTP sets it"
            };
            cx.error(at, key, format!("cannot be set{hint}"));
            continue;
        }
        if out.iter().any(|(n, _)| *n == header) {
            cx.error(
                at,
                key,
                "is another spelling of a header set above: header names are case-insensitive",
            );
            continue;
        }
        match HeaderValue::try_from(value.value.as_str()) {
            Ok(mut v) => {
                // A header may well carry a tenant's token; no debug output shows it.
                v.set_sensitive(true);
                out.push((header, v));
            }
            Err(_) => cx.error(
                &value.referenced,
                key,
                "is not a valid HTTP header value (control characters or line breaks)",
            ),
        }
    }
    out
}

/// The TLS client for an https server, from its `tls` table (or the defaults). The keys that
/// only describe a probe are refused.
fn tls_target(
    cx: &mut Context,
    raw: Option<&S<RawTls>>,
    host: &Host,
    at: Location,
    path: &str,
) -> Option<TlsTarget> {
    let path = format!("{path}.tls");
    let options = match raw {
        None => crate::tls::TlsOptions::default(),
        Some(raw) => {
            let t = &raw.value;
            let probe_only = [
                ("enabled", t.enabled.is_some().then_some(raw.referenced)),
                ("starttls", t.starttls.as_ref().map(|s| s.referenced)),
                (
                    "alert_before_expiry",
                    t.alert_before_expiry.as_ref().map(|s| s.referenced),
                ),
            ];
            let mut refused = false;
            for (key, given) in probe_only {
                if let Some(given) = given {
                    cx.error(
                        &given,
                        format!("{path}.{key}"),
                        "describes a probe's TLS, not this server's",
                    );
                    refused = true;
                }
            }
            if refused {
                return None;
            }
            tls_config::options(cx, raw, &path)??
        }
    };
    tls_config::client_target(
        cx,
        options,
        raw,
        raw.map_or(at, |r| r.referenced),
        host,
        &path,
    )
}
