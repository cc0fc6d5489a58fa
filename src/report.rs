//! The human-readable report of one run, printed by `vantage probe`: what happened, in order,
//! with timings, and why it failed.
//!
//! This owns the frame (the header, the result, the failing step and the detail); what
//! happened in between is each probe type's, in its folder's `report`, through
//! [`Probe::report`](crate::probe::Probe::report).

use std::fmt::Write as _;

use crate::config::Target;
use crate::duration::timing;
use crate::probe::Run;
use crate::probe::tcp::Step;
use crate::probe::tcp::report::{quote_send, regex_of};

pub fn render(target: &Target, run: &Run) -> String {
    let mut out = String::new();
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
    // The probe type's own lines, and its dialogue steps for the failure's `step` line; with
    // `addresses: all`, a section for each address instead.
    let steps = if run.outcome.addresses.is_empty() {
        target.probe.report(run, &mut line)
    } else {
        addresses(target, run, &mut line)
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

/// A section for every address of a run that probed them all: the address, the probe type's
/// lines about it, and its result. Returns the dialogue steps, as [`Probe::report`] does.
///
/// [`Probe::report`]: crate::probe::Probe::report
fn addresses<'t>(target: &'t Target, run: &Run, line: &mut impl FnMut(&str, String)) -> &'t [Step] {
    let total = run.outcome.addresses.len();
    let lookup = match run.outcome.trace.phases.dns.get() {
        Some(took) => format!(", looked up in {}", timing(took)),
        None => String::new(),
    };
    line("addresses", format!("{total} probed{lookup}"));
    let mut steps: &[Step] = &[];
    for (i, probed) in run.outcome.addresses.iter().enumerate() {
        line(
            "address",
            format!("{} ({} of {total})", probed.address, i + 1),
        );
        let one = Run {
            outcome: probed.outcome.clone(),
            attempts: 1,
            duration: probed.took,
            finished_at: run.finished_at,
        };
        // The section's first line names the address; the type's own would call the pinned
        // address an IP literal that needed no lookup.
        let mut within = |label: &str, text: String| {
            if label != "address" {
                line(label, text);
            }
        };
        steps = target.probe.report(&one, &mut within);
        let result = match &probed.outcome.result {
            Ok(()) => format!("success in {}", timing(probed.took)),
            Err(failure) => format!("FAILURE {failure}"),
        };
        line("  result", result);
    }
    steps
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn timing_precision_follows_magnitude() {
        assert_eq!(timing(Duration::from_micros(213)), "0.213 ms");
        assert_eq!(timing(Duration::from_micros(12_400)), "12.4 ms");
        assert_eq!(timing(Duration::from_millis(1503)), "1.503 s");
    }
}
