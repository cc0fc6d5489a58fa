//! The dns lines of `vantage probe`'s report: the question, the server that answered, and the
//! answer's records.

use super::{DnsFacts, DnsProbe};
use crate::duration::timing;
use crate::net::dns::rcode_name;
use crate::outcome::Seen;

/// Answer records printed; the rest are counted.
const REPORTED_RECORDS: usize = 20;

/// The lines of a dns run, between the report's header and its result.
pub fn lines(dns: &DnsProbe, run: Seen<'_, DnsFacts>, line: &mut impl FnMut(&str, String)) {
    let trace = run.trace;
    line("question", format!("{} {}", dns.name, dns.record_type));
    if let Some(facts) = run.facts {
        line(
            "server",
            format!("{} over {}", facts.server, facts.transport),
        );
        let took = trace.phases.dns.get().map(timing).unwrap_or_default();
        line(
            "answer",
            format!(
                "{}, {} records, in {took}",
                rcode_name(facts.rcode),
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
}
