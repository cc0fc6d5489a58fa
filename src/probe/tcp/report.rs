//! The tcp lines of `vantage probe`'s report: the connection, the STARTTLS go-ahead, TLS, and
//! the dialogue's events in order. The events' lines are also http's (its requests record
//! close events too), which is why [`event`] is public.

use super::{Step, TcpFacts, TcpProbe};
use crate::duration::timing;
use crate::outcome::{Close, Event, Seen, Timed};
use crate::probe::lines::connection;
use crate::tls;

/// The lines of a tcp run, between the report's header and its result.
pub fn lines(tcp: &TcpProbe, run: Seen<'_, TcpFacts>, line: &mut impl FnMut(&str, String)) {
    let trace = run.trace;
    connection(line, &tcp.host, trace.address, &trace.phases);
    if let (Some(dialect), Some(took)) = (tcp.starttls, trace.phases.starttls.get()) {
        line(
            "starttls",
            format!("{dialect} go-ahead {} after connect", timing(took)),
        );
    }
    if let Some(facts) = run.facts.and_then(|f| f.tls.as_ref()) {
        tls::report::lines(line, facts, trace.phases.tls.get(), run.finished_at);
    }
    let tls_up = trace.phases.tls.get().is_some();
    for event in &trace.events {
        self::event(line, event, &tcp.steps, tls_up);
    }
}

/// One event of the trace; `steps` are the dialogue's, to quote what was sent and expected,
/// and `tls_up` says whether the close began with close_notify.
pub fn event(
    line: &mut impl FnMut(&str, String),
    event: &Timed<Event>,
    steps: &[Step],
    tls_up: bool,
) {
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

/// ` "the bytes"` of step `index` when it is a send, escaped; else nothing.
pub fn quote_send(steps: &[Step], index: usize) -> String {
    match steps.get(index) {
        Some(Step::Send(bytes)) => {
            let text: String = String::from_utf8_lossy(bytes).escape_debug().collect();
            format!(" \"{text}\"")
        }
        _ => String::new(),
    }
}

/// `/the regex/` of step `index` when it is an expect; else nothing.
pub fn regex_of(steps: &[Step], index: usize) -> String {
    match steps.get(index) {
        Some(Step::Expect(regex)) => format!("/{regex}/"),
        _ => String::new(),
    }
}
