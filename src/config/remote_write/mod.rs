//! The `remote_write` list: the receivers this instance pushes its series to, as Prometheus'
//! remote write 1.0. Raw form and builder; the sending is `push`'s.
//!
//! How to reach a receiver (URL, TLS, credentials, headers) is `config::endpoint`'s, which
//! `http_sd` shares.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{DefaultHasher, Hasher};
use std::time::Duration;

use crate::build::limits::{MAX_LABEL_VALUE_CHARS, text_problem};
use crate::build::{Context, Location, S, hash_serialized};
use crate::config::endpoint::{self, Endpoint, RawEndpoint, bounded_duration};
use crate::duration;
use raw::{RawQueue, RawRemoteWrite};

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

/// One receiver, validated and ready to send to.
#[derive(Clone)]
pub struct RemoteWrite {
    /// Unique among the receivers; the `remote_name` label of the push metrics.
    pub name: String,
    /// Where and how to send: URL, TLS, timeout, and the headers (credentials included).
    pub endpoint: Endpoint,
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
            .field("url", &self.endpoint.shown_url)
            .field(
                "headers",
                &self
                    .endpoint
                    .headers
                    .iter()
                    .map(|(n, _)| n)
                    .collect::<Vec<_>>(),
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
    let endpoint = endpoint::build(
        cx,
        &RawEndpoint {
            url: &raw.url,
            timeout: raw.timeout.as_ref(),
            headers: raw.headers.as_ref(),
            basic_auth: raw.basic_auth.as_ref(),
            authorization: raw.authorization.as_ref(),
            tls: raw.tls.as_ref(),
        },
        path,
        entry.referenced,
        (DEFAULT_TIMEOUT, "http://prometheus:9090/api/v1/write"),
    );
    let name = match &raw.name {
        Some(n) => label_value(cx, n, &format!("{path}.name")),
        None => endpoint.as_ref().map(|e| e.shown_url.clone()),
    };
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
    if cx.error_count() > errors_before {
        return None;
    }
    let mut hasher = DefaultHasher::new();
    hash_serialized(&mut hasher, raw);
    hasher.write(hostname.unwrap_or_default().as_bytes());
    cx.hash_used(&mut hasher);
    Some(RemoteWrite {
        name: name?,
        endpoint: endpoint?,
        queue: queue?,
        job: job?,
        instance: instance?,
        self_metrics_interval,
        fingerprint: hasher.finish(),
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
