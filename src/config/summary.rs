//! What `check-config` prints: every target with its schedule and what it checks.

use std::fmt::Write as _;

use super::Config;
use crate::duration;
use crate::probe::Probe;
use crate::probe::http::Scheme;

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
            let tls = match &t.probe {
                Probe::Icmp(icmp) => {
                    let _ = write!(
                        out,
                        ", {} echoes of {} bytes",
                        icmp.count, icmp.payload_size
                    );
                    None
                }
                Probe::Dns(dns) => {
                    let server = dns
                        .server
                        .map_or("the system resolver".to_string(), |s| s.to_string());
                    let _ = write!(
                        out,
                        ", {} over {} to {server}",
                        dns.record_type, dns.transport
                    );
                    None
                }
                Probe::Tcp(tcp) => tcp.tls.as_ref(),
                Probe::Http(http) => {
                    let _ = write!(out, ", {}", http.method);
                    if !http.headers.is_empty() {
                        let names: Vec<String> = http
                            .headers
                            .iter()
                            .map(|h| {
                                let secret = if h.secret { " (secret)" } else { "" };
                                format!("{}{secret}", h.name)
                            })
                            .collect();
                        let _ = write!(out, " with {}", names.join(", "));
                    }
                    if !http.follow_redirects {
                        let _ = write!(out, ", redirects not followed");
                    }
                    (http.url.scheme == Scheme::Https).then_some(&http.tls)
                }
            };
            if let Some(tls) = tls {
                let options = &tls.client.options;
                let verified = if !options.verify {
                    " not verified"
                } else if options.skip_hostname_verify {
                    " without hostname check"
                } else {
                    ""
                };
                let _ = write!(out, ", TLS{verified} as {}", tls.server_name.to_str());
            }
            if !t.assertions.is_empty() {
                let names: Vec<&str> = t.assertions.iter().map(|a| a.name()).collect();
                let _ = write!(out, ", asserting {}", names.join(", "));
            }
            let _ = writeln!(out);
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
