//! The `expect` fuzz target: a tcp dialogue's `expect` steps, the hold and the gentle close,
//! over a peer that sends arbitrary bytes in arbitrary pieces and pauses (see `peer`).

use std::sync::LazyLock;
use std::time::Duration;

use tokio::time::Instant;

use super::config::expect_regex;
use super::peer::{Peer, Script, block_on};
use super::{Step, TcpProbe};
use crate::net::{Host, IpVersion};
use crate::outcome::{Event, Reason, Trace};

/// Dialogues as configs write them (the README's and `exporter.yml`'s examples among them),
/// and patterns whose matches depend on where a read ends.
const DIALOGUES: &[&[(bool, &str)]] = &[
    &[(true, "PING\r\n"), (false, "\\+PONG")],
    &[(false, "^220 "), (true, "QUIT\r\n"), (false, "^221")],
    &[
        (true, "stats\r\n"),
        (false, "STAT uptime"),
        (true, "quit\r\n"),
    ],
    &[
        (true, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        (false, "^HTTP/1\\.[01] 200"),
    ],
    &[(false, "(?m)^250 [^\r\n]*\r\n$"), (false, "a+b*")],
    &[
        (false, ""),
        (false, "(?s)BEGIN.*END"),
        (false, "(?-u)\\x00\\xff"),
    ],
];

/// Each dialogue as a probe, without and with a hold of a second.
static PROBES: LazyLock<Vec<TcpProbe>> = LazyLock::new(|| {
    let probe = |steps: &[(bool, &str)], hold| TcpProbe {
        host: Host::Name("fuzz.example".to_string()),
        port: 7,
        ip_version: IpVersion::Auto,
        resolver: None,
        steps: steps
            .iter()
            .map(|&(send, text)| match send {
                true => Step::Send(text.as_bytes().to_vec()),
                false => Step::Expect(expect_regex(text).expect("a valid pattern")),
            })
            .collect(),
        hold,
        tls: None,
        starttls: None,
    };
    [Duration::ZERO, Duration::from_secs(1)]
        .into_iter()
        .flat_map(|hold| DIALOGUES.iter().map(move |steps| probe(steps, hold)))
        .collect()
});

/// One input: a byte that picks the dialogue and hold, then the peer's [`Script`].
pub fn expect(data: &[u8]) {
    let Some((&choice, script)) = data.split_first() else {
        return;
    };
    let probe = &PROBES[usize::from(choice) % PROBES.len()];
    let script = Script::parse(script);
    let mut peer = Peer::new(script);
    let mut trace = Trace::start();
    let result = block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        probe
            .converse_and_close(&mut peer, deadline, &mut trace)
            .await
    });
    let matched: Vec<usize> = trace
        .events
        .iter()
        .filter_map(|e| match e.what {
            Event::Matched { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    let consumed: usize = matched.iter().sum();
    assert!(consumed <= peer.sent && peer.sent <= script.bytes.len());
    match result {
        Ok(()) => {
            let expects = probe
                .steps
                .iter()
                .filter(|s| matches!(s, Step::Expect(_)))
                .count();
            assert_eq!(matched.len(), expects);
        }
        Err(failure) => {
            assert!(probe.reasons().contains(failure.reason), "{failure}");
            // A peer that closed before a match: the matcher saw everything it sent, and no
            // match may hide in it, however it was split.
            if let (Reason::ExpectMismatch, Some(Step::Expect(regex))) = (
                failure.reason,
                failure.step.and_then(|i| probe.steps.get(i)),
            ) && failure.detail.contains("closed the connection")
            {
                let window = &script.bytes[consumed..];
                assert!(regex.find(window).is_none(), "missed /{regex}/: {failure}");
            }
        }
    }
}
