//! `GET /`: every target at a glance (up or down, how long the last run took, why it failed),
//! readable in a browser or with `curl` when Grafana is not at hand.

use std::fmt::Write as _;
use std::time::SystemTime;

use crate::duration::timing;
use crate::store::Store;
use crate::tls::{TlsFacts, unix_seconds};

pub fn render(store: &Store) -> String {
    let location = store.location();
    let now = SystemTime::now();
    let mut rows = String::new();
    let (mut up, mut down, mut pending) = (0, 0, 0);
    {
        for entry in store.snapshot() {
            let target = &entry.target;
            let (state, class, last, duration, reason, detail) = match &entry.last {
                None => {
                    pending += 1;
                    (
                        "PENDING",
                        "pending",
                        "not run yet".to_string(),
                        String::new(),
                        String::new(),
                        String::new(),
                    )
                }
                Some(run) => {
                    let ago = now.duration_since(run.finished_at).map_or_else(
                        |_| "just now".to_string(),
                        |d| format!("{}s ago", d.as_secs()),
                    );
                    let duration = timing(run.duration);
                    match run.failure() {
                        None => {
                            up += 1;
                            ("UP", "up", ago, duration, String::new(), String::new())
                        }
                        Some(f) => {
                            down += 1;
                            let reason = match f.step {
                                Some(step) => format!("{} (step {step})", f.reason),
                                None => f.reason.to_string(),
                            };
                            ("DOWN", "down", ago, duration, reason, f.detail.clone())
                        }
                    }
                }
            };
            let total = entry.successes + entry.failures;
            let availability = if total == 0 {
                String::new()
            } else {
                format!(
                    "{:.1}% of {total}",
                    100.0 * entry.successes as f64 / total as f64
                )
            };
            let cert = entry
                .last
                .as_ref()
                .and_then(|run| certificate(run.outcome.facts.tls()?, run.finished_at))
                .unwrap_or_default();
            let _ = writeln!(
                rows,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td class=\"state\">{state}</td>\
                 <td>{last}</td><td>{duration}</td><td>{availability}</td><td>{cert}</td><td>{}</td><td>{}</td></tr>",
                escape(&target.name),
                target.probe.kind(),
                escape(&target.probe.target()),
                escape(&reason),
                escape(&detail),
            );
        }
    }
    let location = if location.is_empty() {
        "(no location set)"
    } else {
        location.as_str()
    };
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"15\">\
         <title>vantage</title><style>\
         body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}\
         td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}\
         .up .state{{color:#1a7f37}}.down .state{{color:#cf222e;font-weight:bold}}.pending .state{{color:#888}}.warning{{color:#9a6700;font-weight:bold}}\
         </style></head><body>\n<h1>vantage at {}</h1>\n<p>{up} up, {down} down, {pending} pending. \
         <a href=\"/metrics\">metrics</a></p>\n<table>\n<tr><th>name</th><th>probe</th><th>target</th>\
         <th>state</th><th>last run</th><th>duration</th><th>availability</th><th>certificate</th><th>reason</th><th>detail</th></tr>\n\
         {rows}</table>\n</body></html>\n",
        escape(location)
    )
}

/// Days to the chain's expiry (the verified chain's, else the presented one's), and the warning
/// when that is within the target's `alert_before_expiry`: the target stays up.
fn certificate(facts: &TlsFacts, at: SystemTime) -> Option<String> {
    let left = facts.expiry()?.not_after - unix_seconds(at);
    let days = format!("{:.1} days", left as f64 / 86_400.0);
    Some(match facts.expiry_warning(at) {
        Some(warning) => format!(
            "<span class=\"warning\" title=\"{}\">&#9888; {days}</span>",
            escape(&warning)
        ),
        None => days,
    })
}

/// Escapes text for HTML: names, details and received bytes come from configs and targets.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, LoadOptions};
    use crate::probe::{Failure, Outcome, Reason, Run, Trace};
    use std::time::Duration;

    #[test]
    fn shows_state_reason_and_escapes_what_targets_send() {
        let yaml = "targets:\n  - {name: \"<b>db</b>\", type: tcp, host: 127.0.0.1, port: 5432}\n  - {name: web, type: tcp, host: 127.0.0.1, port: 80}\n";
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "lab");
        let failure = Failure::new(Reason::ExpectMismatch, "received \"<script>\"").at_step(1);
        store.record(
            "<b>db</b>",
            Run {
                outcome: Outcome::new(Err(failure), Trace::start()),
                attempts: 1,
                duration: Duration::from_millis(3),
                finished_at: SystemTime::now(),
            },
        );
        let page = render(&store);
        assert!(page.contains("&lt;b&gt;db&lt;/b&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("expect_mismatch (step 1)"));
        assert!(page.contains("0 up, 1 down, 1 pending"));
        assert!(page.contains("vantage at lab"));
    }

    #[test]
    fn a_certificate_inside_alert_before_expiry_is_a_warning_on_an_up_target() {
        let yaml = "targets:\n  - {name: web, type: tcp, host: 127.0.0.1, port: 443}\n";
        let config = config::parse(yaml, "t.yml", &LoadOptions::default()).unwrap();
        let store = Store::default();
        store.apply(&config.targets, "lab");
        let now = SystemTime::now();
        let day = 86_400;
        let tls = TlsFacts {
            chain: vec![crate::tls::cert::CertFacts {
                subject: "CN=web".into(),
                issuer: "CN=ca".into(),
                subject_go: "CN=web".into(),
                issuer_go: "CN=ca".into(),
                serial: "01".into(),
                names: vec![],
                sha256: String::new(),
                not_before: Some(0),
                not_after: Some(unix_seconds(now) + 12 * day + 3600),
            }],
            alert_before_expiry: Some(Duration::from_secs(30 * day as u64)),
            ..TlsFacts::default()
        };
        let facts = crate::probe::Facts::Tcp(crate::probe::tcp::TcpFacts {
            tls: Some(Box::new(tls)),
        });
        store.record(
            "web",
            Run {
                outcome: Outcome::with_facts(Ok(()), Trace::start(), facts),
                attempts: 1,
                duration: Duration::from_millis(3),
                finished_at: now,
            },
        );
        let page = render(&store);
        assert!(page.contains("1 up, 0 down"), "{page}");
        assert!(
            page.contains(
                "title=\"certificate 0 (CN=web) expires in 12.0 days, inside alert_before_expiry 30d\">&#9888; 12.0 days"
            ),
            "{page}"
        );
    }
}
