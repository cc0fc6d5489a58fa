//! The `remote_write` list: the receivers this instance pushes its series to, as Prometheus'
//! remote write 1.0. Raw form and builder; the sending is `push`'s.
//!
//! Credentials are read here, once per load, like every file the config names, so a missing
//! one fails the load (or the reload) instead of every send; they never reach a log or a
//! label.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use serde_saphyr::Location;

use crate::build::limits::{MAX_LABEL_VALUE_CHARS, text_problem};
use crate::build::{Context, S, hash_serialized};
use crate::duration::{self, ConfigDuration};
use crate::net::Host;
use crate::tls::TlsTarget;
use crate::tls::config::{self as tls_config, RawTls};
use auth::authorization;
use raw::{RawQueue, RawRemoteWrite};

mod auth;
pub mod raw;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CAPACITY: usize = 500_000;
const MAX_CAPACITY: usize = 100_000_000;
const DEFAULT_MAX_SAMPLES_PER_SEND: usize = 2_000;
const MAX_SAMPLES_PER_SEND: usize = 100_000;
const DEFAULT_BATCH_SEND_DEADLINE: Duration = Duration::from_secs(5);
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(30);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
const DEFAULT_SELF_METRICS_INTERVAL: Duration = Duration::from_secs(15);
/// Below the five minutes after which a receiver takes a silent series as gone, so a pushing
/// instance's own series never go stale between two pushes.
const MAX_SELF_METRICS_INTERVAL: Duration = Duration::from_secs(240);
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// One receiver, validated and ready to send to.
#[derive(Clone)]
pub struct RemoteWrite {
    /// Unique among the receivers; the `remote_name` label of the push metrics.
    pub name: String,
    pub url: Uri,
    /// The URL without its query, for the `url` label and the log: a query may carry a token.
    pub shown_url: String,
    pub host: Host,
    pub port: u16,
    /// Set for `https` URLs.
    pub tls: Option<TlsTarget>,
    pub timeout: Duration,
    /// `headers`, then `Authorization` when `basic_auth` or `authorization` is set (marked
    /// sensitive, so that no debug output shows it).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub queue: QueueSettings,
    /// The labels that tell this instance's series from another's at the receiver.
    pub job: String,
    pub instance: String,
    /// How often vantage's own metrics are pushed; `None` when they are not.
    pub self_metrics_interval: Option<Duration>,
    /// Digest of the entry and the files it read: a reload restarts a sender only when this
    /// changes.
    pub fingerprint: u64,
}

impl fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL as shown and the header names only: values may be credentials.
        f.debug_struct("RemoteWrite")
            .field("name", &self.name)
            .field("url", &self.shown_url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Samples held while the receiver is slow or away; beyond it the oldest are dropped.
    pub capacity: usize,
    pub max_samples_per_send: usize,
    /// How long a sample may wait for a fuller batch.
    pub batch_send_deadline: Duration,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

/// Builds the `remote_write` list, reporting every mistake.
///
/// `hostname` is the default `instance`; `None` when it cannot be read, which an entry then
/// must set.
pub fn build(
    cx: &mut Context,
    raw: &[S<RawRemoteWrite>],
    hostname: Option<&str>,
) -> Vec<RemoteWrite> {
    let mut built: Vec<RemoteWrite> = Vec::new();
    let mut names: BTreeMap<String, Location> = BTreeMap::new();
    for (i, entry) in raw.iter().enumerate() {
        let path = format!("remote_write[{i}]");
        cx.start_target();
        let Some(remote) = one(cx, entry, &path, hostname) else {
            continue;
        };
        let at = entry
            .value
            .name
            .as_ref()
            .map_or(entry.referenced, |n| n.referenced);
        if let Some(first) = names.get(&remote.name) {
            cx.error(
                &at,
                format!("{path}.name"),
                format!(
                    "another receiver (line {}) is named {:?} too: give each a unique name",
                    first.line(),
                    remote.name
                ),
            );
            continue;
        }
        names.insert(remote.name.clone(), at);
        built.push(remote);
    }
    built
}

fn one(
    cx: &mut Context,
    entry: &S<RawRemoteWrite>,
    path: &str,
    hostname: Option<&str>,
) -> Option<RemoteWrite> {
    let raw = &entry.value;
    let errors_before = cx.error_count();
    let url = parse_url(cx, &raw.url, path);
    let name = match &raw.name {
        Some(n) => label_value(cx, n, &format!("{path}.name")),
        None => url.as_ref().map(|u| u.shown.clone()),
    };
    let timeout = bounded_duration(cx, raw.timeout.as_ref(), path, "timeout", DEFAULT_TIMEOUT);
    let mut headers = headers(cx, raw.headers.as_ref(), path);
    let authorization = authorization(cx, raw, path, entry.referenced);
    let queue = queue(cx, raw.queue.as_ref(), path, entry.referenced);
    let job = match &raw.job {
        Some(j) => label_value(cx, j, &format!("{path}.job")),
        None => Some("vantage".to_string()),
    };
    let instance = match &raw.instance {
        Some(i) => label_value(cx, i, &format!("{path}.instance")),
        None => {
            if hostname.is_none() {
                cx.error(
                    &entry.referenced,
                    format!("{path}.instance"),
                    "missing: the host name, its default, cannot be read here",
                );
            }
            hostname.map(str::to_string)
        }
    };
    let self_metrics_interval = match &raw.self_metrics_interval {
        None => Some(DEFAULT_SELF_METRICS_INTERVAL),
        Some(d) if d.value.0.is_zero() => None,
        Some(d) if d.value.0 < Duration::from_secs(1) || d.value.0 > MAX_SELF_METRICS_INTERVAL => {
            cx.error(
                &d.referenced,
                format!("{path}.self_metrics_interval"),
                format!(
                    "must be from 1s to {} (or 0s to push no metrics of vantage's own), not {}",
                    duration::format(MAX_SELF_METRICS_INTERVAL),
                    duration::format(d.value.0)
                ),
            );
            None
        }
        Some(d) => Some(d.value.0),
    };
    let tls = match (&url, &raw.tls) {
        (Some(u), tls) if u.https => tls_target(cx, tls.as_ref(), &u.host, entry.referenced, path),
        (Some(_), Some(tls)) => {
            cx.error(
                &tls.referenced,
                format!("{path}.tls"),
                "the url is http://: tls applies only to https:// receivers",
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
    let mut hasher = DefaultHasher::new();
    hash_serialized(&mut hasher, raw);
    hasher.write(hostname.unwrap_or_default().as_bytes());
    cx.hash_used(&mut hasher);
    Some(RemoteWrite {
        name: name?,
        shown_url: url.shown,
        host: url.host,
        port: url.port,
        url: url.uri,
        tls: if url.https { Some(tls?) } else { None },
        timeout,
        headers,
        queue: queue?,
        job: job?,
        instance: instance?,
        self_metrics_interval,
        fingerprint: hasher.finish(),
    })
}

struct ParsedUrl {
    uri: Uri,
    shown: String,
    host: Host,
    port: u16,
    https: bool,
}

fn parse_url(cx: &mut Context, raw: &S<String>, path: &str) -> Option<ParsedUrl> {
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
                "must start with http:// or https://, as http://prometheus:9090/api/v1/write"
                    .into(),
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

/// A label value (`name`, `job`, `instance`): a short single line of text.
fn label_value(cx: &mut Context, raw: &S<String>, key: &str) -> Option<String> {
    if let Some(problem) = text_problem(&raw.value, MAX_LABEL_VALUE_CHARS) {
        cx.error(&raw.referenced, key, format!("the value {problem}"));
        return None;
    }
    if raw.value.is_empty() {
        cx.error(&raw.referenced, key, "must not be empty");
        return None;
    }
    Some(raw.value.clone())
}

fn bounded_duration(
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
/// themselves (the remote write spec's reserved ones and hop-by-hop ones), and credentials,
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
                ": remote write or HTTP sets it"
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

fn queue(
    cx: &mut Context,
    raw: Option<&S<RawQueue>>,
    path: &str,
    entry: Location,
) -> Option<QueueSettings> {
    let empty = RawQueue::default();
    let q = raw.map_or(&empty, |q| &q.value);
    let path = format!("{path}.queue");
    let count = |cx: &mut Context, v: Option<&S<i64>>, key: &str, default, max| match v {
        None => Some(default),
        Some(n) => match usize::try_from(n.value) {
            Ok(n) if (1..=max).contains(&n) => Some(n),
            _ => {
                cx.error(
                    &n.referenced,
                    format!("{path}.{key}"),
                    format!("must be from 1 to {max}, not {}", n.value),
                );
                None
            }
        },
    };
    let capacity = count(
        cx,
        q.capacity.as_ref(),
        "capacity",
        DEFAULT_CAPACITY,
        MAX_CAPACITY,
    );
    let per_send = count(
        cx,
        q.max_samples_per_send.as_ref(),
        "max_samples_per_send",
        DEFAULT_MAX_SAMPLES_PER_SEND,
        MAX_SAMPLES_PER_SEND,
    );
    let settings = QueueSettings {
        capacity: capacity?,
        max_samples_per_send: per_send?,
        batch_send_deadline: bounded_duration(
            cx,
            q.batch_send_deadline.as_ref(),
            &path,
            "batch_send_deadline",
            DEFAULT_BATCH_SEND_DEADLINE,
        ),
        min_backoff: bounded_duration(
            cx,
            q.min_backoff.as_ref(),
            &path,
            "min_backoff",
            DEFAULT_MIN_BACKOFF,
        ),
        max_backoff: bounded_duration(
            cx,
            q.max_backoff.as_ref(),
            &path,
            "max_backoff",
            DEFAULT_MAX_BACKOFF,
        ),
    };
    if settings.max_backoff < settings.min_backoff {
        let at = q
            .max_backoff
            .as_ref()
            .map_or_else(|| raw.map_or(entry, |r| r.referenced), |m| m.referenced);
        cx.error(
            &at,
            format!("{path}.max_backoff"),
            format!(
                "must be at least min_backoff ({})",
                duration::format(settings.min_backoff)
            ),
        );
        return None;
    }
    if settings.max_samples_per_send > settings.capacity {
        let at = q
            .max_samples_per_send
            .as_ref()
            .map_or_else(|| raw.map_or(entry, |r| r.referenced), |m| m.referenced);
        cx.error(
            &at,
            format!("{path}.max_samples_per_send"),
            format!(
                "must be at most the capacity ({}): a batch is taken from the queue",
                settings.capacity
            ),
        );
        return None;
    }
    Some(settings)
}

/// The TLS client for an https receiver, from its `tls` table (or the defaults). The keys that
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
                        "describes a probe's TLS, not a receiver's",
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
