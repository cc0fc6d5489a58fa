//! The http lines of `vantage probe`'s report: every request with its phases and answer, then
//! the TLS facts of the last https request.

use super::HttpFacts;
use crate::duration::timing;
use crate::outcome::{Seen, Trace};
use crate::probe::lines::connection;
use crate::probe::tcp::report::event;
use crate::tls;

/// The lines of an http run, between the report's header and its result. The handshake's
/// duration is on its request's line, so the TLS lines leave it out.
pub fn lines(run: Seen<'_, HttpFacts>, line: &mut impl FnMut(&str, String)) {
    if let Some(http) = run.facts {
        hops(line, http, run.trace);
    }
    if let Some(facts) = run.facts.and_then(|f| f.tls.as_ref()) {
        tls::report::lines(line, facts, None, run.finished_at);
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
        if let Some(handshake) = hop.phases.tls.get() {
            line("tls", format!("handshake {}", timing(handshake)));
        }
        if let Some(first_byte) = hop.phases.first_byte.get() {
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
        let tls_up = hop.phases.tls.get().is_some();
        // A run that has forgotten its events (`Outcome::forget_events`) has none to show.
        for timed in trace.events.get(hop.events.clone()).unwrap_or_default() {
            event(line, timed, &[], tls_up);
        }
    }
    if http.redirects() > 0 {
        line("redirects", http.redirects().to_string());
    }
}
