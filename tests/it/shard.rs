//! Sharding with real processes: replicas of one config split its targets, every target is
//! probed by exactly one of them, and adding targets moves none. The StatefulSet case takes the
//! index from a hostname set in a UTS namespace of the test's own.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use vantage::shard::Shard;

use crate::support::{
    self, TempDir, Vantage, http_get, probed, quiet_peer, vantage_as_host, vantage_bin, wait_for,
};

fn config(dir: &TempDir, port: u16, targets: usize) -> std::path::PathBuf {
    let names: Vec<String> = (0..targets).map(|i| format!("svc-{i}")).collect();
    config_of(dir, port, &names)
}

fn config_of(dir: &TempDir, port: u16, names: &[String]) -> std::path::PathBuf {
    let mut yaml =
        String::from("location: lab\ndefaults: {interval: 1s, timeout: 500ms}\ntargets:\n");
    for name in names {
        yaml.push_str(&format!(
            "  - {{name: {name}, type: tcp, host: 127.0.0.1, port: {port}}}\n"
        ));
    }
    dir.write("exporter.yml", &yaml)
}

/// Waits until the replicas together probe `targets` targets, and returns each one's names.
fn split(replicas: &[Vantage], targets: usize) -> Vec<BTreeSet<String>> {
    let mut sets = Vec::new();
    wait_for(Duration::from_secs(20), "every target to be probed", || {
        sets = replicas.iter().map(probed).collect();
        sets.iter().map(BTreeSet::len).sum::<usize>() >= targets
    });
    sets
}

#[test]
fn replicas_probe_every_target_exactly_once_and_keep_theirs_when_targets_come_and_go() {
    let dir = TempDir::new("shard");
    let port = quiet_peer();
    let path = config(&dir, port, 24);
    let replicas: Vec<Vantage> = (0..3)
        .map(|i| Vantage::start(&path, &[&format!("--shard={i}/3")]))
        .collect();

    let before = split(&replicas, 24);
    let all: Vec<&String> = before.iter().flatten().collect();
    let unique: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 24, "a target probed twice: {before:?}");
    assert_eq!(unique.len(), 24);
    for (i, (replica, names)) in replicas.iter().zip(&before).enumerate() {
        assert!(!names.is_empty(), "shard {i} got none of 24 targets");
        let body = http_get(replica.addr, "/metrics", None).unwrap().body;
        assert!(
            body.contains(&format!(
                "vantage_shard_info{{index=\"{i}\",count=\"3\"}} 1"
            )),
            "{body}"
        );
        assert!(
            body.contains(&format!("vantage_targets{{probe=\"tcp\"}} {}", names.len())),
            "{body}"
        );
    }

    // New targets in front of and between the old ones, four old ones removed, the rest in
    // reverse order: a target's shard must not depend on its place in the file.
    let mut names: Vec<String> = (0..19).map(|i| format!("new-{i}")).collect();
    for i in (4..24).rev() {
        names.push(format!("svc-{i}"));
        names.push(format!("between-{i}"));
    }
    config_of(&dir, port, &names);
    for replica in &replicas {
        replica.signal("HUP");
    }
    let after = split(&replicas, names.len());
    assert_eq!(after.iter().map(BTreeSet::len).sum::<usize>(), names.len());
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        let kept: BTreeSet<&String> = old.iter().filter(|n| names.contains(n)).collect();
        assert!(
            kept.iter().all(|n| new.contains(*n)),
            "shard {i} lost targets: {old:?} then {new:?}"
        );
        assert!(
            !new.contains("svc-0"),
            "a removed target is still probed by shard {i}"
        );
    }
    let union: BTreeSet<&String> = after.iter().flatten().collect();
    assert_eq!(union.len(), names.len());
}

#[test]
fn an_unsharded_instance_is_shard_0_of_1() {
    let dir = TempDir::new("shard-whole");
    let vantage = Vantage::start(&config(&dir, quiet_peer(), 1), &[]);
    let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
    assert!(
        body.contains("vantage_shard_info{index=\"0\",count=\"1\"} 1"),
        "{body}"
    );
}

#[test]
fn a_statefulset_pod_takes_its_shard_from_its_hostname() {
    support::needs(&["root"]);
    let dir = TempDir::new("shard-hostname");
    let path = config(&dir, quiet_peer(), 12);
    let flags = ["--shard.from-hostname", "--shard.count=3"];

    let vantage = Vantage::start_as(vantage_as_host("vantage-eu-2"), &path, &flags);
    let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
    assert!(
        body.contains("vantage_shard_info{index=\"2\",count=\"3\"} 1"),
        "{body}"
    );
    let expected: BTreeSet<String> = (0..12)
        .map(|i| format!("svc-{i}"))
        .filter(|n| Shard::new(2, 3).unwrap().owns(n))
        .collect();
    let mut seen = BTreeSet::new();
    wait_for(Duration::from_secs(15), "shard 2's targets", || {
        seen = probed(&vantage);
        seen.len() >= expected.len()
    });
    assert_eq!(seen, expected);

    // Scaled beyond the count: the pod must fail to start, not probe nothing or everything.
    let out = vantage_as_host("vantage-eu-3")
        .arg(format!("--config.file={}", path.display()))
        .args(["check-config"])
        .args(flags)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("hostname \"vantage-eu-3\": shard index 3 is out of range for 3 shards")
            && stderr.contains("scaled beyond --shard.count"),
        "{stderr}"
    );
}

#[test]
fn shard_flags_are_checked_wherever_they_stand() {
    let run = |args: &[&str]| Command::new(vantage_bin()).args(args).output().unwrap();
    for (args, says) in [
        (
            &["--shard=3/3", "check-config"][..],
            "out of range for 3 shards",
        ),
        (&["--shard=1", "check-config"][..], "not INDEX/COUNT"),
        (
            &["--shard.from-hostname", "check-config"][..],
            "needs --shard.count",
        ),
        (
            &["check-config", "--shard.count=3"][..],
            "goes with --shard.from-hostname",
        ),
        (
            &[
                "--shard=0/3",
                "--shard.from-hostname",
                "--shard.count=3",
                "check-config",
            ][..],
            "cannot be used with",
        ),
        // Global flags on both sides of the subcommand are judged together.
        (
            &[
                "--shard=0/3",
                "check-config",
                "--shard.from-hostname",
                "--shard.count=3",
            ][..],
            "cannot be used with",
        ),
        (
            &["--shard.from-hostname", "--shard.count=0", "check-config"][..],
            "0 is not in 1..",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A valid split: the flags are accepted, and the hostname is what is judged.
    let dir = TempDir::new("shard-split");
    let path = config(&dir, quiet_peer(), 3);
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = run(&[
        "--shard.from-hostname",
        "check-config",
        "--shard.count=3",
        path.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ordinal = hostname
        .trim()
        .rsplit_once('-')
        .and_then(|(_, o)| o.parse::<u32>().ok());
    match ordinal {
        Some(i) if i < 3 => assert_eq!(out.status.code(), Some(0), "{stderr}"),
        _ => {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("hostname {:?}", hostname.trim())),
                "{stderr}"
            );
        }
    }
}
