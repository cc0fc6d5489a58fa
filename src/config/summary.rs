//! What `check-config` prints: every target with its schedule and what it checks.

use std::fmt::Write as _;

use super::sources::{ListState, SourceKind};
use super::target::{Config, FailureReasons};
use crate::duration;
use crate::probe::Addresses;

impl Config {
    /// What `check-config` prints: enough to see that the file means what its author meant.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let location = if self.location.is_empty() {
            "(none)"
        } else {
            &self.location
        };
        let _ = writeln!(out, "location: {location}");
        let _ = writeln!(out, "max_concurrent_probes: {}", self.max_concurrent_probes);
        let reasons = match self.failure_reasons {
            FailureReasons::Possible => {
                "possible (a series at 0 for every reason a target can fail with)"
            }
            FailureReasons::Seen => "seen (a series for each reason a target has failed with)",
        };
        let _ = writeln!(out, "failure_reasons: {reasons}");
        if self.shard.is_whole() {
            let _ = writeln!(out, "targets: {}", self.targets.len());
        } else {
            let _ = writeln!(
                out,
                "targets: {} in shard {}, {} in the other shards",
                self.targets.len(),
                self.shard,
                self.other_shards
            );
        }
        for t in &self.targets {
            let _ = write!(
                out,
                "  {} ({} {}) every {}, timeout {}",
                t.name,
                t.probe.kind(),
                t.probe.target(),
                duration::format(t.interval),
                duration::format(t.policy.timeout)
            );
            if t.policy.retries > 0 {
                let _ = write!(
                    out,
                    ", {} retries {} apart",
                    t.policy.retries,
                    duration::format(t.policy.retry_delay)
                );
            }
            if let Some(iof) = t.interval_on_failure {
                let _ = write!(out, ", every {} while failing", duration::format(iof));
            }
            if t.policy.addresses == Addresses::All && t.probe.locator().is_some() {
                let _ = write!(out, ", every address");
            }
            out.push_str(&t.probe.summary());
            if !t.assertions.is_empty() {
                let names: Vec<&str> = t.assertions.iter().map(|a| a.name()).collect();
                let _ = write!(out, ", asserting {}", names.join(", "));
            }
            let _ = writeln!(out);
        }
        for r in &self.remote_write {
            let auth = r
                .endpoint
                .headers
                .iter()
                .any(|(name, _)| name == http::header::AUTHORIZATION);
            // The name only when it is not the URL, its default.
            let named = if r.name == r.endpoint.shown_url {
                String::new()
            } else {
                format!("{}: ", r.name)
            };
            let _ = writeln!(
                out,
                "remote_write {named}{}{} as job={} instance={}, queue of {} samples{}",
                r.endpoint.shown_url,
                if auth { " with credentials" } else { "" },
                r.job,
                r.instance,
                r.queue.capacity,
                r.self_metrics_interval
                    .map(|i| format!(", own metrics every {}", duration::format(i)))
                    .unwrap_or_default()
            );
        }
        for m in self.modules.values() {
            let t = &m.template;
            let _ = writeln!(
                out,
                "module {} ({}{}) timeout {}, {}",
                m.name,
                t.probe.kind(),
                if m.asks_name {
                    format!(" {}", t.probe.target())
                } else {
                    String::new()
                },
                duration::format(t.policy.timeout),
                if m.allow.is_some() {
                    "/probe may use it within its allow list"
                } else {
                    "not on /probe (no allow list)"
                }
            );
        }
        for r in &self.sources {
            let (what, listed) = match &r.source.kind {
                SourceKind::File { patterns } => (
                    "file_sd",
                    patterns
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                SourceKind::Http(h) => (
                    "http_sd",
                    format!(
                        "{} every {}",
                        h.endpoint.shown_url,
                        duration::format(h.refresh_interval)
                    ),
                ),
            };
            let state = match (r.state, &r.source.kind) {
                (ListState::Newest, _) => format!("targets: {}", r.targets),
                (ListState::Empty, SourceKind::Http(_)) if r.errors.is_empty() => {
                    "fetched when vantage runs".to_string()
                }
                (ListState::Empty | ListState::LastGood, _) => {
                    format!(
                        "its list has mistakes ({}), so it gives no targets yet",
                        r.errors.len()
                    )
                }
            };
            let _ = writeln!(
                out,
                "target source {} ({what} {listed}): {state}",
                r.source.name
            );
        }
        if !self.elsewhere.is_empty() {
            let _ = writeln!(
                out,
                "not run at this location: {}",
                self.elsewhere.join(", ")
            );
        }
        out
    }
}
