//! The human-readable report of one run, printed by `vantage probe`: what happened, in order,
//! with timings, and why it failed.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use std::fmt;

use crate::config::Target;
use crate::duration::timing;
use crate::net::Host;
use crate::outcome::{Close, Event, Failure, Phases, Timed, Trace};
use crate::probe::http::HttpFacts;
use crate::probe::tcp::Step;
use crate::probe::{Probe, Run};
use crate::tls::cert::CertFacts;
use crate::tls::{TlsFacts, unix_seconds};

/// Answer records printed; the rest are counted.
const REPORTED_RECORDS: usize = 20;

pub fn render(target: &Target, run: &Run) -> String {
    let mut out = String::new();
    let trace = &run.outcome.trace;
    let mut line = |label: &str, text: String| {
        let _ = writeln!(out, "{label:<10}{text}");
    };
    line(
        "target",
        format!(
            "{} {} ({})",
            target.probe.kind(),
            target.probe.target(),
            target.name
        ),
    );
    let steps: &[Step] = match &target.probe {
        Probe::Tcp(tcp) => {
            connection(&mut line, &tcp.host, trace.address, &trace.phases);
            if let (Some(dialect), Some(took)) = (tcp.starttls, trace.phases.starttls) {
                line(
                    "starttls",
                    format!("{dialect} go-ahead {} after connect", timing(took)),
                );
            }
            if let Some(facts) = run.outcome.facts.tls() {
                tls(&mut line, facts, trace.phases.tls, run.finished_at);
            }
            let tls_up = trace.phases.tls.is_some();
            for event in &trace.events {
                self::event(&mut line, event, &tcp.steps, tls_up);
            }
            &tcp.steps
        }
        Probe::Icmp(icmp) => {
            let ip = trace.address.map(|a| a.ip());
            connection(&mut line, &icmp.host, ip, &trace.phases);
            if let Some(facts) = run.outcome.facts.icmp() {
                let received = facts.rtts.len();
                line(
                    "echoes",
                    format!(
                        "{received} of {} answered ({:.0}% lost), {} bytes of payload",
                        facts.sent,
                        facts.loss_ratio() * 100.0,
                        icmp.payload_size
                    ),
                );
                if let Some([min, avg, max, stddev]) = facts.stats() {
                    let ms = |s: f64| timing(Duration::from_secs_f64(s));
                    line(
                        "rtt",
                        format!(
                            "min {}, avg {}, max {}, stddev {}",
                            ms(min),
                            ms(avg),
                            ms(max),
                            ms(stddev)
                        ),
                    );
                }
            }
            &[]
        }
        Probe::Dns(dns) => {
            line("question", format!("{} {}", dns.name, dns.record_type));
            if let Some(facts) = run.outcome.facts.dns() {
                line(
                    "server",
                    format!("{} over {}", facts.server, facts.transport),
                );
                let took = trace.phases.dns.map(timing).unwrap_or_default();
                line(
                    "answer",
                    format!(
                        "{}, {} records, in {took}",
                        crate::net::dns::rcode_name(facts.rcode),
                        facts.answers.len()
                    ),
                );
                for record in facts.answers.iter().take(REPORTED_RECORDS) {
                    line("record", record.clone());
                }
                if facts.answers.len() > REPORTED_RECORDS {
                    line(
                        "",
                        format!("... {} more", facts.answers.len() - REPORTED_RECORDS),
                    );
                }
            } else if let Some(server) = trace.address {
                line("server", server.to_string());
            }
            &[]
        }
        Probe::Http(_) => {
            if let Some(http) = run.outcome.facts.http() {
                hops(&mut line, http, trace);
            }
            if let Some(facts) = run.outcome.facts.tls() {
                tls(&mut line, facts, None, run.finished_at);
            }
            &[]
        }
    };
    let attempts = match run.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    match &run.outcome.result {
        Ok(()) => line(
            "result",
            format!("success in {} ({attempts})", timing(run.duration)),
        ),
        Err(failure) => {
            line(
                "result",
                format!(
                    "FAILURE {} after {} ({attempts})",
                    failure.reason,
                    timing(run.duration)
                ),
            );
            if let Some(step) = failure.step {
                let what = match steps.get(step) {
                    Some(Step::Send(_)) => format!("send{}", quote_send(steps, step)),
                    Some(Step::Expect(_)) => format!("expect {}", regex_of(steps, step)),
                    None => String::new(),
                };
                line("step", format!("{step}: {what}"));
            }
            line("detail", failure.detail.clone());
        }
    }
    out
}

/// Where the connection went and how long getting there took.
/// `address` is the socket address, or for icmp (which has no port) the IP.
fn connection(
    line: &mut impl FnMut(&str, String),
    host: &Host,
    address: Option<impl fmt::Display>,
    phases: &Phases,
) {
    match (address, phases.dns) {
        (Some(addr), Some(lookup)) => line(
            "address",
            format!("{host} resolved to {addr} in {}", timing(lookup)),
        ),
        (Some(addr), None) => line("address", format!("{addr} (IP literal, no lookup)")),
        (None, _) => {}
    }
    if let Some(connect) = phases.connect {
        line("connect", timing(connect));
    }
}

/// Every request of an HTTP run, its phases and its answer, with the body of the last one.
fn hops(line: &mut impl FnMut(&str, String), http: &HttpFacts, trace: &Trace) {
    let last = http.hops.len().saturating_sub(1);
    for (i, hop) in http.hops.iter().enumerate() {
        line(
            &format!("request {i}"),
            format!("{} {}", hop.method, hop.url),
        );
        connection(line, &hop.url.host, hop.address, &hop.phases);
        if let Some(handshake) = hop.phases.tls {
            line("tls", format!("handshake {}", timing(handshake)));
        }
        if let Some(first_byte) = hop.phases.first_byte {
            line("ttfb", timing(first_byte));
        }
        if let (Some(status), Some(version)) = (hop.status, hop.version) {
            let location = match &hop.location {
                Some(l) if i < last => format!(", redirect to {l}"),
                _ => String::new(),
            };
            line("answer", format!("{version:?} {status}{location}"));
            let cut = if hop.body_cut {
                ", cut at body_size_limit"
            } else {
                ""
            };
            line("body", format!("{} bytes{cut}", hop.body_bytes));
        }
        let tls_up = hop.phases.tls.is_some();
        for event in &trace.events[hop.events.clone()] {
            self::event(line, event, &[], tls_up);
        }
    }
    if http.redirects() > 0 {
        line("redirects", http.redirects().to_string());
    }
}

fn event(line: &mut impl FnMut(&str, String), event: &Timed<Event>, steps: &[Step], tls_up: bool) {
    let at = timing(event.at);
    match &event.what {
        Event::Sent { step, bytes } => line(
            &format!("step {step}"),
            format!("sent {bytes} bytes{} at {at}", quote_send(steps, *step)),
        ),
        Event::Matched { step, bytes } => line(
            &format!("step {step}"),
            format!(
                "expect {} matched, {bytes} bytes consumed, at {at}",
                regex_of(steps, *step)
            ),
        ),
        Event::Held { peer_closed: true } => {
            line("hold", format!("the peer closed during the hold, at {at}"))
        }
        Event::Held { peer_closed: false } => line("hold", format!("held until {at}")),
        Event::Said { client, text } => line(
            if *client { "client" } else { "server" },
            format!("{text} at {at}"),
        ),
        Event::Closed { how, discarded } => {
            let sent = if tls_up {
                "close_notify and FIN"
            } else {
                "FIN"
            };
            let how = match how {
                Close::PeerClosed => format!("{sent} sent, the peer closed too"),
                Close::GraceOver => format!("{sent} sent, the peer had not closed yet"),
                Close::DrainLimit => {
                    format!("{sent} sent, but the peer kept sending: the connection was reset")
                }
            };
            let extra = if *discarded > 0 {
                format!(" ({discarded} unread bytes discarded)")
            } else {
                String::new()
            };
            line("close", format!("{how}{extra}, at {at}"));
        }
    }
}

/// The handshake, every presented certificate, and the verification verdicts.
fn tls(
    line: &mut impl FnMut(&str, String),
    facts: &TlsFacts,
    handshake: Option<Duration>,
    at: SystemTime,
) {
    let sni = match &facts.server_name {
        Some(name) => format!("SNI {name}"),
        None => "no SNI (IP address)".to_string(),
    };
    let alpn = match &facts.alpn {
        Some(protocol) => format!(", ALPN {protocol}"),
        None => String::new(),
    };
    let took = match handshake {
        Some(took) => format!(", handshake {}", timing(took)),
        None => String::new(),
    };
    match (facts.version, &facts.cipher) {
        (Some(version), Some(cipher)) => {
            line("tls", format!("{version} {cipher}{took}, {sni}{alpn}"))
        }
        _ => line("tls", format!("handshake not completed, {sni}")),
    }
    let now = unix_seconds(at);
    for (i, cert) in facts.chain.iter().enumerate() {
        line(&format!("cert {i}"), cert_subject(cert));
        line("", format!("issuer   {}", cert.issuer));
        if let (Some(from), Some(until)) = (cert.not_before, cert.not_after) {
            let left = (until - now) as f64 / 86_400.0;
            let left = if left < 0.0 {
                format!("expired {:.1} days ago", -left)
            } else {
                format!("{left:.1} days left")
            };
            line(
                "",
                format!("valid    {} to {} ({left})", date(from), date(until)),
            );
        }
        if !cert.names.is_empty() {
            line("", format!("names    {}", cert.names.join(", ")));
        }
        line("", format!("serial   {}", cert.serial));
        line("", format!("sha256   {}", cert.sha256));
    }
    if let Some(v) = &facts.verification {
        let verdict = |r: &Result<(), Failure>| match r {
            Ok(()) => "ok".to_string(),
            Err(f) => format!("FAILED {}: {}", f.reason, f.detail),
        };
        line("chain", verdict(&v.chain));
        line("hostname", verdict(&v.hostname));
    }
}

fn cert_subject(cert: &CertFacts) -> String {
    if cert.not_after.is_none() {
        "(a certificate that could not be parsed)".to_string()
    } else if cert.subject.is_empty() {
        "(empty subject)".to_string()
    } else {
        cert.subject.clone()
    }
}

/// `2026-11-21 09:30:00 UTC`
fn date(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("@{unix}"),
    }
}

fn quote_send(steps: &[Step], index: usize) -> String {
    match steps.get(index) {
        Some(Step::Send(bytes)) => {
            let text: String = String::from_utf8_lossy(bytes).escape_debug().collect();
            format!(" \"{text}\"")
        }
        _ => String::new(),
    }
}

fn regex_of(steps: &[Step], index: usize) -> String {
    match steps.get(index) {
        Some(Step::Expect(regex)) => format!("/{regex}/"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc() {
        assert_eq!(date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(date(1_795_000_000), "2026-11-18 11:06:40 UTC");
    }

    #[test]
    fn timing_precision_follows_magnitude() {
        assert_eq!(timing(Duration::from_micros(213)), "0.213 ms");
        assert_eq!(timing(Duration::from_micros(12_400)), "12.4 ms");
        assert_eq!(timing(Duration::from_millis(1503)), "1.503 s");
    }
}
