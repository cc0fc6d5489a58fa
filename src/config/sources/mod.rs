//! `target_sources:`: targets that live elsewhere, in Prometheus' file SD and HTTP SD formats.
//! A source names a module (or writes one in place, `template`) that its targets run, and
//! each target of its list is built as a config target that names that module, with the same
//! checks and the same fingerprint, so that a reload keeps every unchanged one running.
//!
//! This file validates the sources themselves; `lists` reads their lists (the files, or what
//! the `http_sd` pollers fetched) into targets, keeping a source's last good list while its
//! newest has mistakes.

mod format;
mod lists;

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::endpoint::{self, Endpoint, RawEndpoint};
use super::raw::{RawFileSd, RawHttpSd, RawSource};
use crate::build::error::ConfigError;
use crate::build::file::TARGET_LIST;
use crate::build::limits::text_problem;
use crate::build::{Context, Location, S, hash_serialized};
use crate::duration;

/// The targets a source may give unless `max_targets` says otherwise: far more than a list
/// written by hand, far fewer than a generator gone wrong.
const DEFAULT_MAX_TARGETS: usize = 100_000;
const MAX_MAX_TARGETS: usize = 1_000_000;
/// Longest source name: it starts the default name of each of its targets.
const MAX_SOURCE_NAME: usize = 128;
const DEFAULT_REFRESH: Duration = Duration::from_secs(60);
const MIN_REFRESH: Duration = Duration::from_secs(1);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A target source, validated.
#[derive(Debug)]
pub struct Source {
    /// Unique among the sources; the `source` label of their metrics.
    pub name: String,
    pub kind: SourceKind,
    pub max_targets: usize,
    /// Where it reads from: [`from_digest`] of its patterns, or of its whole URL.
    pub from: u64,
    /// Digest of the entry and the files it read: a reload restarts a poller only when this
    /// changes.
    pub fingerprint: u64,
}

impl Source {
    /// The most an `http_sd` answer may hold: room for `max_targets` generous entries, within
    /// what a list file may hold. Beyond it the answer is not read.
    pub fn answer_limit(&self) -> usize {
        let limit = usize::try_from(TARGET_LIST.bytes).unwrap_or(usize::MAX);
        self.max_targets
            .saturating_mul(512)
            .saturating_add(1 << 20)
            .min(limit)
    }
}

#[derive(Debug)]
pub enum SourceKind {
    /// Files, each path or pattern (`*` and `?` in the last part) relative to the config.
    File {
        patterns: Vec<PathBuf>,
    },
    Http(Box<HttpSd>),
}

/// An `http_sd` source: the server to poll, and how often.
#[derive(Clone)]
pub struct HttpSd {
    pub endpoint: Endpoint,
    pub refresh_interval: Duration,
}

impl std::fmt::Debug for HttpSd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL as shown: the query and the headers may carry credentials.
        f.debug_struct("HttpSd")
            .field("url", &self.endpoint.shown_url)
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

/// One list as read: a file, or what a server answered, with where it came from for messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Listed {
    pub origin: String,
    pub text: Arc<str>,
    /// Where the source that read it reads from ([`Source::from`]): a list read from elsewhere
    /// (before the source's files or URL changed) is not its list.
    pub from: u64,
}

impl std::fmt::Debug for Listed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the text: it may be megabytes.
        f.debug_struct("Listed")
            .field("origin", &self.origin)
            .field("bytes", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// The digest that tells where a source reads from: its patterns, or its whole URL, which is
/// never kept as text, since a query may carry a token.
pub fn from_digest(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(text.as_bytes());
    hasher.finish()
}

/// What the load made of one source's lists.
#[derive(Debug)]
pub struct SourceReport {
    pub source: Arc<Source>,
    /// The targets of the list in use, before locations and shards pick this instance's.
    pub targets: usize,
    pub state: ListState,
    /// The mistakes of the newest list, which is then not used.
    pub errors: Vec<ConfigError>,
    /// The newest list, when it built: the last good one from now on.
    pub good: Option<Vec<Listed>>,
}

/// Which list of a source runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListState {
    /// The newest one.
    Newest,
    /// The last good one, since the newest has mistakes.
    LastGood,
    /// None: no list has been fetched yet, or none was ever good.
    Empty,
}

/// What the sources gave, for a load: what each `http_sd` source's server answered last, and
/// the list each source last built from without a mistake, both by source name.
#[derive(Debug, Clone, Default)]
pub struct SourceInputs {
    pub fetched: BTreeMap<String, Listed>,
    pub last_good: BTreeMap<String, Vec<Listed>>,
}

/// Validates the `target_sources` entries; `None` in place of one with mistakes.
pub(super) fn build(cx: &mut Context, raw: &[S<RawSource>]) -> Vec<Option<Arc<Source>>> {
    let mut names: BTreeMap<&str, Location> = BTreeMap::new();
    raw.iter()
        .enumerate()
        .map(|(i, entry)| {
            let path = format!("target_sources[{i}]");
            let name = &entry.value.name;
            if let Some(first) = names.get(name.value.as_str()) {
                cx.error(
                    &name.referenced,
                    format!("{path}.name"),
                    format!(
                        "another source (line {}) is named {:?} too: give each a unique name",
                        first.line(),
                        name.value
                    ),
                );
                return None;
            }
            names.insert(&name.value, name.referenced);
            cx.start_target();
            one(cx, entry, &path).map(Arc::new)
        })
        .collect()
}

fn one(cx: &mut Context, entry: &S<RawSource>, path: &str) -> Option<Source> {
    let raw = &entry.value;
    let errors = cx.error_count();
    if let Some(problem) = text_problem(&raw.name.value, MAX_SOURCE_NAME).or_else(|| {
        raw.name
            .value
            .is_empty()
            .then(|| "must not be empty".into())
    }) {
        cx.error(&raw.name.referenced, format!("{path}.name"), problem);
    }
    match (&raw.module, &raw.template) {
        (Some(_), Some(t)) => cx.error(
            &t.referenced,
            format!("{path}.template"),
            "a source runs its `module` or its `template`: set one",
        ),
        (None, None) => cx.error(
            &entry.referenced,
            format!("{path}.module"),
            "missing: name the module its targets run, or write a `template`",
        ),
        _ => {}
    }
    if let Some(t) = &raw.template
        && let Some(allow) = &t.value.allow
    {
        cx.error(
            &allow.referenced,
            format!("{path}.template.allow"),
            "`allow` is for /probe, which runs modules, not templates",
        );
    }
    let max_targets = match &raw.max_targets {
        None => DEFAULT_MAX_TARGETS,
        Some(m) => match usize::try_from(m.value) {
            Ok(n) if (1..=MAX_MAX_TARGETS).contains(&n) => n,
            _ => {
                cx.error(
                    &m.referenced,
                    format!("{path}.max_targets"),
                    format!("must be from 1 to {MAX_MAX_TARGETS}, not {}", m.value),
                );
                DEFAULT_MAX_TARGETS
            }
        },
    };
    let kind = match (&raw.file_sd, &raw.http_sd) {
        (Some(file), None) => file_sd(cx, file, path),
        (None, Some(http)) => {
            http_sd(cx, http, &format!("{path}.http_sd")).map(|h| SourceKind::Http(Box::new(h)))
        }
        (Some(_), Some(http)) => {
            cx.error(
                &http.referenced,
                format!("{path}.http_sd"),
                "a source is file_sd or http_sd: make two sources",
            );
            None
        }
        (None, None) => {
            cx.error(
                &entry.referenced,
                path,
                "missing: file_sd (files) or http_sd (a url) to read the targets from",
            );
            None
        }
    };
    if cx.error_count() > errors {
        return None;
    }
    let mut hasher = DefaultHasher::new();
    hash_serialized(&mut hasher, raw);
    cx.hash_used(&mut hasher);
    let kind = kind?;
    let from = from_digest(&match &kind {
        SourceKind::File { patterns } => patterns
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        SourceKind::Http(http) => http.endpoint.url.to_string(),
    });
    Some(Source {
        name: raw.name.value.clone(),
        kind,
        max_targets,
        from,
        fingerprint: hasher.finish(),
    })
}

fn file_sd(cx: &mut Context, raw: &S<RawFileSd>, path: &str) -> Option<SourceKind> {
    let files = &raw.value.files;
    if files.value.is_empty() {
        cx.error(
            &files.referenced,
            format!("{path}.file_sd.files"),
            "list one or more files, such as sd/*.json",
        );
        return None;
    }
    let mut patterns = Vec::new();
    for (i, f) in files.value.iter().enumerate() {
        let key = format!("{path}.file_sd.files[{i}]");
        let written = PathBuf::from(&f.value);
        let folder_wild = written
            .parent()
            .is_some_and(|p| p.to_string_lossy().contains(['*', '?', '[']));
        if f.value.trim().is_empty() || f.value.ends_with('/') {
            cx.error(
                &f.referenced,
                key,
                "name a file, or files with * in the name",
            );
        } else if folder_wild {
            cx.error(
                &f.referenced,
                key,
                "only the file name may hold * or ?, as in sd/*.json (as in Prometheus)",
            );
        } else {
            patterns.push(cx.relative(&f.value));
        }
    }
    (patterns.len() == files.value.len()).then_some(SourceKind::File { patterns })
}

fn http_sd(cx: &mut Context, raw: &S<RawHttpSd>, path: &str) -> Option<HttpSd> {
    let h = &raw.value;
    let endpoint = endpoint::build(
        cx,
        &RawEndpoint {
            url: &h.url,
            timeout: h.timeout.as_ref(),
            headers: h.headers.as_ref(),
            basic_auth: h.basic_auth.as_ref(),
            authorization: h.authorization.as_ref(),
            tls: h.tls.as_ref(),
        },
        path,
        raw.referenced,
        (DEFAULT_HTTP_TIMEOUT, "http://sd.example:8080/targets"),
    );
    let refresh_interval = h
        .refresh_interval
        .as_ref()
        .map_or(DEFAULT_REFRESH, |r| r.value.0);
    if refresh_interval < MIN_REFRESH {
        let at = h
            .refresh_interval
            .as_ref()
            .map_or(raw.referenced, |r| r.referenced);
        cx.error(
            &at,
            format!("{path}.refresh_interval"),
            format!(
                "must be at least {}, not {}: every vantage point of a fleet polls the server",
                duration::format(MIN_REFRESH),
                duration::format(refresh_interval)
            ),
        );
        return None;
    }
    let endpoint = endpoint?;
    if endpoint.timeout >= refresh_interval {
        let at = h.timeout.as_ref().map_or(raw.referenced, |t| t.referenced);
        cx.error(
            &at,
            format!("{path}.timeout"),
            format!(
                "timeout {} must be shorter than refresh_interval {}",
                duration::format(endpoint.timeout),
                duration::format(refresh_interval)
            ),
        );
        return None;
    }
    Some(HttpSd {
        endpoint,
        refresh_interval,
    })
}
