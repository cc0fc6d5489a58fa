//! icmp probes to loopback (IPv4 and IPv6) and without the right to send ICMP. The network
//! cases (a dead address, a lossy link) are in `netns`.

use std::process::Command;
use std::sync::Arc;

use vantage::config::{self, LoadOptions, Target};

use crate::support::{needs, run, vantage_bin};

fn icmp_target(host: &str, icmp: &str) -> Arc<Target> {
    let yaml = format!(
        "targets:\n  - name: i\n    type: icmp\n    host: \"{host}\"\n    interval: 1m\n    timeout: 3s\n    icmp: {{{icmp}}}\n"
    );
    let config = config::parse(&yaml, "test.yml", &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    Arc::clone(&config.targets[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_answers_every_echo_over_ipv4_and_ipv6() {
    needs(&["root"]);
    for host in ["127.0.0.1", "::1"] {
        let run = run(&icmp_target(host, "count: 4, payload_size: 100")).await;
        assert!(run.success(), "{host}: {:?}", run.failure());
        let facts = run.outcome.facts.icmp().unwrap();
        assert_eq!((facts.sent, facts.rtts.len()), (4, 4), "{host}");
        assert_eq!(facts.loss_ratio(), 0.0);
        let [min, avg, max, _] = facts.stats().unwrap();
        assert!(min > 0.0 && min <= avg && avg <= max, "{min} {avg} {max}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spacing_between_echoes_is_not_counted_as_the_runs_duration() {
    needs(&["root"]);
    let run = run(&icmp_target("127.0.0.1", "count: 3")).await;
    assert!(run.success(), "{:?}", run.failure());
    let facts = run.outcome.facts.icmp().unwrap();
    // A 3 s timeout spaces three echoes nearly 500 ms apart (a sixth of the time left after
    // the lookup): counted, they made a loopback ping last a second; left out, the run lasts
    // about one round trip.
    assert!(
        facts.spacing > std::time::Duration::from_millis(400),
        "{:?}",
        facts.spacing
    );
    assert!(
        run.duration < facts.spacing / 2,
        "a loopback run of three echoes took {:?} with echoes {:?} apart",
        run.duration,
        facts.spacing
    );
    let answered = run.outcome.trace.answered.unwrap();
    assert!(answered <= run.duration, "{answered:?} {:?}", run.duration);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_runs_to_one_host_keep_their_own_replies() {
    needs(&["root"]);
    let target = icmp_target("127.0.0.1", "count: 5");
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let target = Arc::clone(&target);
        runs.spawn(async move { run(&target).await });
    }
    while let Some(run) = runs.join_next().await {
        let run = run.unwrap();
        assert!(run.success(), "{:?}", run.failure());
        let facts = run.outcome.facts.icmp().unwrap();
        assert_eq!(
            facts.rtts.len(),
            5,
            "every run got exactly its own five replies"
        );
    }
}

#[test]
fn without_icmp_rights_the_probe_says_permission_denied_and_what_to_grant() {
    // Where ping sockets are open to nobody, nobody's ping would succeed: nothing to deny.
    needs(&["root", "ping-sockets-closed"]);
    // As nobody, with no capabilities: neither a ping socket nor a raw socket is allowed.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([vantage_bin(), "probe", "127.0.0.1", "--type=icmp"])
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAILURE permission_denied"), "{stdout}");
    assert!(stdout.contains("CAP_NET_RAW"), "{stdout}");
    assert_eq!(stderr.matches("ping_group_range").count(), 1, "{stderr}");
}
