//! The TCP probe against real peers on 127.0.0.1: each behaviour a target can show, and the
//! reason vantage must give for it.

use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vantage::probe::{Close, Event, Reason, Run};

use crate::support::{closed_port, run, target, thread_peer};

/// Starts a loopback server that hands every accepted connection to `serve`.
async fn server<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    port
}

/// Reads until EOF or error, like a server waiting for the client's next command.
async fn drain(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// Answers every `PING\r\n` with `+PONG\r\n`, like Redis.
async fn redis_like(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if buf[..n].starts_with(b"PING") && stream.write_all(b"+PONG\r\n").await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn an_open_port_succeeds_with_connect_timed_and_a_polite_close() {
    let port = server(drain).await;
    let run = run(&target(port, "")).await;
    assert!(run.success(), "{:?}", run.failure());
    assert_eq!(run.attempts, 1);
    let trace = &run.outcome.trace;
    assert!(trace.phases.connect.get().is_some());
    assert!(
        trace.phases.dns.get().is_none(),
        "an IP literal needs no lookup"
    );
    assert_eq!(
        trace.address,
        Some(format!("127.0.0.1:{port}").parse().unwrap())
    );
    assert!(matches!(
        trace.events.last().map(|e| &e.what),
        Some(Event::Closed {
            how: Close::PeerClosed,
            discarded: 0
        })
    ));
}

#[tokio::test]
async fn a_name_is_resolved_and_the_lookup_timed() {
    let port = server(drain).await;
    let config = vantage::config::parse(
        &format!(
            "targets:\n  - {{name: t, type: tcp, host: localhost, port: {port}, ip_version: 4}}\n"
        ),
        "t.yml",
        &Default::default(),
    )
    .unwrap();
    let run = run(&config.targets[0]).await;
    assert!(run.success(), "{:?}", run.failure());
    assert!(run.outcome.trace.phases.dns.get().is_some());
    assert_eq!(
        run.outcome.trace.address,
        Some(format!("127.0.0.1:{port}").parse().unwrap())
    );
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let run = run(&target(closed_port(), "")).await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::ConnectionRefused);
    assert_eq!(failure.step, None);
}

#[tokio::test]
async fn ipv6_loopback_works_when_the_host_has_it() {
    crate::support::needs(&["ipv6-loopback"]);
    let listener = TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(drain(s));
        }
    });
    let config = vantage::config::parse(
        &format!("targets:\n  - {{name: t, type: tcp, host: \"::1\", port: {port}}}\n"),
        "t.yml",
        &Default::default(),
    )
    .unwrap();
    let t = &config.targets[0];
    assert_eq!(t.probe.target(), format!("[::1]:{port}"));
    let run = run(t).await;
    assert!(run.success(), "{:?}", run.failure());
}

#[tokio::test]
async fn a_reset_right_after_accept_is_connection_reset() {
    let port = server(|stream| async move {
        SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
    })
    .await;
    for extra in [
        "",
        "    tcp: {expect: \"x\"}\n",
        "    tcp: {send: \"PING\\r\\n\", expect: \"x\"}\n",
    ] {
        let run = run(&target(port, extra)).await;
        let failure = run
            .failure()
            .unwrap_or_else(|| panic!("must fail with {extra:?}"));
        assert_eq!(
            failure.reason,
            Reason::ConnectionReset,
            "{extra:?}: {failure}"
        );
    }
}

#[tokio::test]
async fn a_silent_peer_times_out_at_the_deadline_keeping_what_was_measured() {
    let port = server(|stream| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(stream);
    })
    .await;
    let started = Instant::now();
    let run = run(&target(
        port,
        "    timeout: 500ms\n    tcp: {expect: \"^220\"}\n",
    ))
    .await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::Timeout);
    assert_eq!(failure.step, Some(0));
    assert!(
        run.outcome.trace.phases.connect.get().is_some(),
        "the connect phase survives the timeout"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        run.duration < Duration::from_secs(5),
        "the run ended near its deadline"
    );
}

#[tokio::test]
async fn send_and_expect_match() {
    let port = server(redis_like).await;
    let run = run(&target(
        port,
        "    tcp: {send: \"PING\\r\\n\", expect: \"^\\\\+PONG\\r\\n\"}\n",
    ))
    .await;
    assert!(run.success(), "{:?}", run.failure());
    let events: Vec<&Event> = run.outcome.trace.events.iter().map(|e| &e.what).collect();
    assert_eq!(
        events,
        [
            &Event::Sent { step: 0, bytes: 6 },
            &Event::Matched { step: 1, bytes: 7 },
            &Event::Closed {
                how: Close::PeerClosed,
                discarded: 0
            },
        ]
    );
}

#[tokio::test]
async fn a_wrong_answer_then_close_is_expect_mismatch_quoting_what_came() {
    let port = server(|mut stream| async move {
        let mut buf = [0u8; 64];
        let _ = stream.read(&mut buf).await;
        let _ = stream.write_all(b"-ERR unknown command\r\n").await;
    })
    .await;
    let run = run(&target(
        port,
        "    tcp: {send: \"PING\\r\\n\", expect: \"\\\\+PONG\"}\n",
    ))
    .await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::ExpectMismatch);
    assert_eq!(failure.step, Some(1));
    assert!(
        failure.detail.contains("-ERR unknown command\\r\\n"),
        "{}",
        failure.detail
    );
    assert!(failure.detail.contains("closed"), "{}", failure.detail);
}

#[tokio::test]
async fn a_wrong_answer_on_an_open_connection_is_a_mismatch_at_the_deadline_not_a_timeout() {
    let port = server(|mut stream| async move {
        let _ = stream.write_all(b"hello, I am not redis\r\n").await;
        drain(stream).await;
    })
    .await;
    let run = run(&target(
        port,
        "    timeout: 300ms\n    tcp: {expect: \"PONG\"}\n",
    ))
    .await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::ExpectMismatch);
    assert!(
        failure.detail.contains("before the deadline"),
        "{}",
        failure.detail
    );
    assert!(
        failure.detail.contains("I am not redis"),
        "{}",
        failure.detail
    );
}

/// An SMTP-like peer that answers HELO with `reply`.
async fn smtp_answering_helo(mut stream: TcpStream, reply: &'static [u8]) {
    if stream.write_all(b"220 mail.test ESMTP\r\n").await.is_err() {
        return;
    }
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let answer: &[u8] = if buf[..n].starts_with(b"HELO") {
            reply
        } else {
            b"221 bye\r\n"
        };
        if stream.write_all(answer).await.is_err() {
            break;
        }
    }
}

const SMTP_STEPS: &str = "    tcp:\n      steps:\n        - expect: \"^220 \"\n        - send: \"HELO vantage\\r\\n\"\n        - expect: \"^250 \"\n        - send: \"QUIT\\r\\n\"\n        - expect: \"^221\"\n";

/// Regression: `^220 ` left the rest of the greeting line unread, and `^250` was anchored to
/// that leftover, so a plain SMTP dialogue could never succeed. `^` now means a line start.
#[tokio::test]
async fn expect_anchors_at_line_starts_after_a_partial_match() {
    let port = server(|s| smtp_answering_helo(s, b"250 hello\r\n")).await;
    let run = run(&target(port, SMTP_STEPS)).await;
    assert!(run.success(), "{:?}", run.failure());
}

#[tokio::test]
async fn a_multi_step_dialogue_reports_the_failing_step() {
    let port = server(|s| smtp_answering_helo(s, b"550 go away\r\n")).await;
    let run = run(&target(port, &format!("    timeout: 500ms\n{SMTP_STEPS}"))).await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::ExpectMismatch);
    assert_eq!(failure.step, Some(2));
    assert!(failure.detail.contains("550 go away"), "{}", failure.detail);
    let done: Vec<usize> = run
        .outcome
        .trace
        .events
        .iter()
        .filter_map(|e| match e.what {
            Event::Sent { step, .. } | Event::Matched { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(done, [0, 1], "steps before the failing one completed");
}

#[tokio::test]
async fn a_multi_step_dialogue_succeeds_across_several_reads() {
    let port = server(|mut stream| async move {
        // The banner arrives in pieces: expect must keep reading until its regex matches.
        for piece in [&b"22"[..], b"0 ready", b"\r\n"] {
            if stream.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut buf = [0u8; 64];
        if let Ok(n) = stream.read(&mut buf).await
            && &buf[..n] == b"QUIT\r\n"
        {
            let _ = stream.write_all(b"221 bye\r\n").await;
        }
    })
    .await;
    let steps = "    tcp: {steps: [{expect: \"^220 ready\\r\\n\"}, {send: \"QUIT\\r\\n\"}, {expect: \"^221\"}]}\n";
    let run = run(&target(port, steps)).await;
    assert!(run.success(), "{:?}", run.failure());
}

#[tokio::test]
async fn a_flooding_peer_fails_fast_with_a_bounded_read() {
    let port = server(|mut stream| async move {
        let chunk = vec![b'x'; 16 * 1024];
        // Bounded: 1 GiB at most, far more than the probe may read.
        for _ in 0..65_536 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
    .await;
    let run = run(&target(
        port,
        "    timeout: 10s\n    tcp: {expect: \"never\"}\n",
    ))
    .await;
    let failure = run.failure().expect("must fail");
    assert_eq!(failure.reason, Reason::ExpectMismatch);
    assert!(
        failure.detail.contains("first 65536 bytes"),
        "{}",
        failure.detail
    );
    assert!(
        failure.detail.contains("received 65536 bytes"),
        "{}",
        failure.detail
    );
    assert!(
        run.duration < Duration::from_secs(10),
        "it stopped reading at the limit, not the deadline"
    );
}

/// Asserts that the run's hold ended as `peer_closed` says.
fn assert_held(run: &Run, peer_closed: bool) {
    assert!(
        run.outcome
            .trace
            .events
            .iter()
            .any(|e| e.what == Event::Held { peer_closed }),
        "{:?}",
        run.outcome.trace.events
    );
}

#[tokio::test]
async fn hold_keeps_the_connection_open_before_closing() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let port = server(move |stream| {
        let tx = tx.clone();
        async move {
            let accepted = Instant::now();
            drain(stream).await;
            let _ = tx.send(accepted.elapsed());
        }
    })
    .await;
    let run = run(&target(port, "    tcp: {hold: 300ms}\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    let open_for = rx.recv().await.unwrap();
    assert!(
        open_for >= Duration::from_millis(300),
        "held only {open_for:?}"
    );
    assert_held(&run, false);
}

#[tokio::test]
async fn retries_are_counted_and_the_last_reason_kept() {
    let run = run(&target(
        closed_port(),
        "    timeout: 2s\n    retries: 2\n    retry_delay: 10ms\n",
    ))
    .await;
    assert_eq!(run.attempts, 3);
    assert_eq!(run.failure().unwrap().reason, Reason::ConnectionRefused);
}

/// A peer that never stops sending gets its hold, and a close that stops reading at its limit.
/// (That no always-ready peer can stretch a hold past its end is proven in `probe::tcp`'s tests.)
#[tokio::test]
async fn a_flooding_peer_gets_its_hold_and_a_bounded_close() {
    let port = server(|mut stream| async move {
        let chunk = vec![b'y'; 16 * 1024];
        // Bounded: 1 GiB at most.
        for _ in 0..65_536 {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
        }
    })
    .await;
    let run = run(&target(port, "    timeout: 3s\n    tcp: {hold: 200ms}\n")).await;
    assert!(run.success(), "{:?}", run.failure());
    let events: Vec<&Event> = run.outcome.trace.events.iter().map(|e| &e.what).collect();
    assert!(
        events.contains(&&Event::Held { peer_closed: false }),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Closed {
                how: Close::DrainLimit,
                ..
            }
        )),
        "the close stops reading at its limit: {events:?}"
    );
    assert!(
        run.duration < Duration::from_secs(3),
        "the hold ended, not the deadline"
    );
}

/// CPU time this thread has used: utime and stime of `/proc/thread-self/stat`, in the kernel's
/// fixed USER_HZ of 100 ticks a second.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Writes as fast as the probe takes it, for at most 5 s (longer than any hold here).
fn flood(mut stream: std::net::TcpStream) {
    use std::io::Write;
    let chunk = vec![b'f'; 64 * 1024];
    let start = std::time::Instant::now();
    for _ in 0..1_000_000 {
        if start.elapsed() > Duration::from_secs(5) || stream.write_all(&chunk).is_err() {
            return;
        }
    }
}

/// Regression (issue 23, item 3): a peer writing as fast as it could during a 2 s hold cost
/// 1.83 CPU-s of reading and discarding. The runtime is this test's one thread, so the run's
/// CPU time is this thread's (the peer's threads are not counted).
#[tokio::test]
async fn a_peer_flooding_during_hold_costs_bounded_cpu() {
    let port = thread_peer(flood);
    let before = thread_cpu();
    let run = run(&target(port, "    timeout: 4s\n    tcp: {hold: 2s}\n")).await;
    let cost = thread_cpu() - before;
    assert!(run.success(), "{:?}", run.failure());
    assert_held(&run, false);
    assert!(
        cost < Duration::from_millis(250),
        "a 2 s hold cost {cost:?} of CPU"
    );
}

/// Once the probe's dialogue is over (its one `send` arrived), sends 1 MiB, far past what the
/// hold reads unpaced, then closes (FIN).
fn send_a_lot_then_close(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.read(&mut [0u8; 16]);
    let _ = stream.write_all(&vec![b'c'; 1024 * 1024]);
}

/// Sends 1 MiB, then resets.
fn send_a_lot_then_reset(stream: std::net::TcpStream) {
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    send_a_lot_then_close(stream);
}

/// Pacing a flood must not hide what the hold is for: the peer ending the connection.
#[tokio::test]
async fn a_peer_that_closes_or_resets_after_a_flood_is_seen_during_the_hold() {
    let hold = "    timeout: 8s\n    tcp: {send: \"go\", hold: 6s}\n";
    let run_closed = run(&target(thread_peer(send_a_lot_then_close), hold)).await;
    assert!(run_closed.success(), "{:?}", run_closed.failure());
    assert_held(&run_closed, true);
    assert!(
        run_closed.duration < Duration::from_secs(6),
        "seen before the hold ended"
    );

    let run_reset = run(&target(thread_peer(send_a_lot_then_reset), hold)).await;
    let failure = run_reset.failure().expect("a reset fails the run");
    assert_eq!(failure.reason, Reason::ConnectionReset, "{failure:?}");
    assert!(failure.detail.contains("holding"), "{}", failure.detail);
    assert!(
        run_reset.duration < Duration::from_secs(6),
        "seen before the hold ended"
    );
}
