//! remote_write where receivers and the push's own timing are awkward: an answer with a long
//! body, a `Retry-After` of 0, an idle push (no batch due for minutes), and a stop with one
//! receiver away and another healthy; against the receiver of `remote_write`.

use std::time::{Duration, Instant};

use crate::remote_write::{Receiver, config, gaps, metric, pushing};
use crate::support::{TempDir, Vantage, wait_for};

#[test]
fn a_long_answer_body_does_not_turn_a_success_into_a_retry() {
    // 100 KB of body after a 200, as a proxy's page might be: the status decides.
    let receiver = Receiver::start(|_| Some((200, "X-Body-Bytes: 100000\r\n")));
    let (vantage, _dir) = pushing(
        &receiver,
        "push-long-body",
        "batch_send_deadline: 200ms, min_backoff: 30ms",
    );
    wait_for(Duration::from_secs(15), "three batches accepted", || {
        metric(&vantage, "vantage_remote_write_samples_total") > 0.0
            && receiver.received().len() >= 3
    });
    assert_eq!(
        metric(&vantage, "vantage_remote_write_samples_retried_total"),
        0.0
    );
    let received = receiver.received();
    for (i, a) in received.iter().enumerate() {
        for b in &received[i + 1..] {
            assert_ne!(a.body, b.body, "an accepted batch was sent again");
        }
    }
}

#[test]
fn a_retry_after_of_0_waits_the_backoff() {
    let receiver = Receiver::start(|n| {
        Some(if n < 3 {
            (429, "Retry-After: 0\r\n")
        } else {
            (204, "")
        })
    });
    let (_vantage, _dir) = pushing(
        &receiver,
        "push-retry-after-0",
        "batch_send_deadline: 200ms, min_backoff: 300ms, max_backoff: 5s",
    );
    wait_for(Duration::from_secs(15), "three 429s and a success", || {
        receiver.received().len() >= 4
    });
    let received = receiver.received();
    let gaps = gaps(&received[..4]);
    for (gap, floor) in gaps.iter().zip([300, 600, 1200]) {
        assert!(
            *gap >= Duration::from_millis(floor - 20),
            "not an immediate retry: the backoff, doubling from 300 ms: {gaps:?}"
        );
    }
}

/// CPU seconds (user and system) process `pid` has used.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn an_idle_push_uses_no_more_cpu_than_no_push() {
    // No run for a minute, no own metrics: nothing is due, before or after a reload.
    let receiver = Receiver::start(|_| Some((204, "")));
    let (pushing, plain) = (TempDir::new("push-idle"), TempDir::new("push-idle-plain"));
    let targets = "defaults: {interval: 60s, timeout: 1s}\ntargets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 9}\n";
    let with_push = pushing.write(
        "exporter.yml",
        &format!(
            "{targets}remote_write:\n  - url: {}\n    self_metrics_interval: 0s\n    queue: {{batch_send_deadline: 100ms}}\n",
            receiver.url()
        ),
    );
    let without = plain.write("exporter.yml", targets);
    let (a, b) = (
        Vantage::start(&with_push, &[]),
        Vantage::start(&without, &[]),
    );
    let (start_a, start_b) = (cpu_seconds(a.child.id()), cpu_seconds(b.child.id()));
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    a.signal("HUP");
    b.signal("HUP");
    std::thread::sleep(Duration::from_secs(3));
    let (used_a, used_b) = (
        cpu_seconds(a.child.id()) - start_a,
        cpu_seconds(b.child.id()) - start_b,
    );
    // A sender that spins takes a whole core: about as many CPU seconds as have passed.
    let passed = started.elapsed().as_secs_f64();
    assert!(
        used_a <= used_b + passed / 10.0,
        "pushing used {used_a:.2} CPU s, not pushing {used_b:.2}, in {passed:.1} s"
    );
}

#[test]
fn a_receiver_that_is_away_does_not_take_a_healthy_ones_time_to_finish() {
    let (away, healthy) = (
        Receiver::start(|_| None),
        Receiver::start(|_| Some((204, ""))),
    );
    let dir = TempDir::new("push-stop");
    // Batches wait a minute to fill: at the stop, both queues hold what the runs made.
    let path = config(
        &dir,
        1,
        &format!(
            "remote_write:\n  - url: {}\n    name: away\n    timeout: 30s\n    self_metrics_interval: 0s\n    queue: {{batch_send_deadline: 1m}}\n  - url: {}\n    name: healthy\n    self_metrics_interval: 0s\n    queue: {{batch_send_deadline: 1m}}\n",
            away.url(),
            healthy.url()
        ),
    );
    let vantage = Vantage::start(&path, &[]);
    wait_for(Duration::from_secs(10), "two runs queued", || {
        metric(&vantage, "probe_runs_total") >= 2.0
    });
    assert!(
        healthy.received().is_empty(),
        "nothing sent before the stop"
    );
    let (exit, log) = vantage.stop("TERM");
    assert!(exit.success(), "{log}");
    assert!(
        !healthy.samples("probe_success").is_empty(),
        "the healthy receiver got its samples at the stop:\n{log}"
    );
    assert!(
        log.contains("stopped before the remote_write receiver took every sample")
            && log.contains("remote=away"),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("remote=healthy") && l.contains("stopped before")),
        "{log}"
    );
}
