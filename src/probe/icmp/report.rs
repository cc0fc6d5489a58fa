//! The icmp lines of `vantage probe`'s report: where the echoes went, how many came back, and
//! their round trips.

use std::time::Duration;

use super::{IcmpFacts, IcmpProbe};
use crate::duration::timing;
use crate::outcome::Seen;
use crate::probe::lines::connection;

/// The lines of an icmp run, between the report's header and its result.
pub fn lines(icmp: &IcmpProbe, run: Seen<'_, IcmpFacts>, line: &mut impl FnMut(&str, String)) {
    let trace = run.trace;
    let ip = trace.address.map(|a| a.ip());
    connection(line, &icmp.host, ip, &trace.phases);
    if let Some(facts) = run.facts {
        let received = facts.rtts.len();
        line(
            "echoes",
            format!(
                "{received} of {} answered ({:.0}% lost), {} bytes of payload, sent {} apart \
                 (not counted in the run's duration)",
                facts.sent,
                facts.loss_ratio() * 100.0,
                icmp.payload_size,
                timing(facts.spacing)
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
}
