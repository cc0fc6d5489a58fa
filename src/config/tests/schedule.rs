//! The schedule every target inherits (interval, timeout, retries), labels, locations, shards
//! and the concurrency limit.

use super::*;

#[test]
fn timeout_must_be_shorter_than_interval_and_the_error_points_at_the_target() {
    single(
        &format!("{TCP}    interval: 10s\n    timeout: 10s\n"),
        7,
        14,
        "targets[0].timeout",
        "must be shorter than interval 10s",
    );
    // Only the interval is the target's own: the error points there and names the default.
    single(
        &format!("defaults:\n  timeout: 20s\n{TCP}    interval: 15s\n"),
        8,
        15,
        "targets[0].interval",
        "from defaults, line 2",
    );
}

#[test]
fn a_bad_default_is_reported_once_at_defaults_not_at_every_target() {
    let yaml =
        format!("defaults:\n  timeout: 40s\n{TCP}  - {{name: b, type: tcp, host: h, port: 1}}\n");
    single(&yaml, 2, 12, "defaults.timeout", "the built-in default");
}

#[test]
fn zero_durations_are_refused() {
    single(
        &format!("{TCP}    timeout: 0s\n"),
        6,
        14,
        "targets[0].timeout",
        "must be at least 10ms, not 0s",
    );
    single(
        &format!("{TCP}    interval: 0s\n"),
        6,
        15,
        "targets[0].interval",
        "must be at least 1s, not 0s",
    );
}

#[test]
fn interval_on_failure_must_outlast_the_timeout() {
    single(
        &format!("{TCP}    timeout: 5s\n    interval_on_failure: 5s\n"),
        7,
        26,
        "targets[0].interval_on_failure",
        "longer than timeout 5s",
    );
}

#[test]
fn retries_must_fit_in_the_timeout_and_be_at_most_ten() {
    single(
        &format!("{TCP}    timeout: 2s\n    retries: 1\n    retry_delay: 2s\n"),
        8,
        18,
        "targets[0].retry_delay",
        "shorter than timeout 2s",
    );
    single(
        &format!("{TCP}    retries: -1\n"),
        6,
        14,
        "targets[0].retries",
        "must be 0 to 10, not -1",
    );
    single(
        &format!("{TCP}    retries: 1000000\n    retry_delay: 0s\n"),
        6,
        14,
        "targets[0].retries",
        "must be 0 to 10, not 1000000: each retry is another connection",
    );
    ok(&format!("{TCP}    retries: 10\n    retry_delay: 0s\n"));
}

#[test]
fn defaults_are_inherited_and_targets_override_them() {
    let c = ok(&format!(
        "defaults:\n  interval: 1m\n  timeout: 3s\n  retries: 2\n  retry_delay: 500ms\n  \
         interval_on_failure: 10s\n  ip_version: 4\n{TCP}  - {{name: b, type: tcp, host: h, port: 1, timeout: 7s, ip_version: auto}}\n"
    ));
    let (a, b) = (&c.targets[0], &c.targets[1]);
    assert_eq!(a.interval, Duration::from_secs(60));
    assert_eq!(a.policy.timeout, Duration::from_secs(3));
    assert_eq!(a.policy.retries, 2);
    assert_eq!(a.policy.retry_delay, Duration::from_millis(500));
    assert_eq!(a.interval_on_failure, Some(Duration::from_secs(10)));
    assert_eq!(b.policy.timeout, Duration::from_secs(7));
    assert_eq!(b.interval, Duration::from_secs(60));
    let ip = |t: &Target| match &t.probe {
        Probe::Tcp(p) => p.ip_version,
        Probe::Http(p) => p.ip_version,
        Probe::Icmp(p) => p.ip_version,
        Probe::Dns(_) => panic!("dns targets ask a server at a fixed address"),
    };
    assert_eq!(ip(a), IpVersion::V4);
    assert_eq!(ip(b), IpVersion::Auto);
}

#[test]
fn addresses_is_first_unless_set_and_inherits_from_defaults() {
    use crate::probe::Addresses;
    let c = ok(&format!("{TCP}  - {{name: b, type: icmp, host: h}}\n"));
    assert!(
        c.targets
            .iter()
            .all(|t| t.policy.addresses == Addresses::First)
    );
    assert!(!c.summary().contains("every address"));
    let c = ok(&format!(
        "defaults:\n  addresses: all\n{TCP}  - {{name: b, type: tcp, host: h, port: 1, addresses: first}}\n  \
         - {{name: c, type: dns, host: h}}\n"
    ));
    let policy: Vec<Addresses> = c.targets.iter().map(|t| t.policy.addresses).collect();
    assert_eq!(policy, [Addresses::All, Addresses::First, Addresses::All]);
    let summary = c.summary();
    let lines: Vec<&str> = summary
        .lines()
        .filter(|l| l.contains("every address"))
        .collect();
    assert_eq!(lines.len(), 1, "only where it applies: {summary}");
    assert!(lines[0].trim_start().starts_with("a "), "{summary}");
}

#[test]
fn addresses_takes_first_or_all_and_not_on_dns_targets() {
    single(
        &format!("{TCP}    addresses: every\n"),
        6,
        16,
        "targets[0].addresses",
        "first",
    );
    single(
        "targets:\n  - name: d\n    type: dns\n    host: h\n    addresses: all\n",
        5,
        16,
        "targets[0].addresses",
        "applies to tcp, http and icmp targets",
    );
}

#[test]
fn ip_version_accepts_only_auto_4_and_6() {
    single(
        &format!("{TCP}    ip_version: 5\n"),
        6,
        17,
        "targets[0].ip_version",
        "not one of auto, 4, 6",
    );
}

#[test]
fn labels_merge_with_target_labels_winning() {
    let c = ok(&format!(
        "labels: {{env: prod, team: core}}\n{TCP}    labels: {{team: edge, tier: 1}}\n"
    ));
    let labels: Vec<(&str, String)> = c.targets[0]
        .labels
        .iter()
        .skip(4)
        .map(|(k, v)| (k, v.into_owned()))
        .collect();
    assert_eq!(
        labels,
        [("env", "prod"), ("team", "edge"), ("tier", "1")].map(|(k, v)| (k, v.to_string()))
    );
}

#[test]
fn labels_must_be_valid_and_not_shadow_vantage_labels() {
    single(
        "labels: {name: x}\ntargets: []\n",
        1,
        9,
        "labels.name",
        "vantage sets itself",
    );
    single(
        "labels: {__x: y}\ntargets: []\n",
        1,
        9,
        "labels.__x",
        "reserves",
    );
    single(
        "labels: {9x: y}\ntargets: []\n",
        1,
        9,
        "labels.9x",
        "not a valid label name",
    );
    single(
        &format!("{TCP}    labels: {{reason: x}}\n"),
        6,
        13,
        "targets[0].labels.reason",
        "vantage sets itself",
    );
}

#[test]
fn locations_filter_targets_against_this_instance() {
    let yaml = format!(
        "location: office\n{TCP}    locations: [office, dc]\n  - {{name: b, type: tcp, host: h, port: 1, locations: [dc]}}\n"
    );
    let c = ok(&yaml);
    assert_eq!(c.location, "office");
    assert_eq!(
        c.targets
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(c.elsewhere, ["b"]);
    let (key, value) = c.targets[0].labels.iter().nth(3).unwrap();
    assert_eq!((key, &*value), ("location", "office"));

    let dc = LoadOptions {
        location: Some("dc".into()),
        every_location: false,
        shard: Shard::WHOLE,
    };
    let c = parse(&yaml, "t.yml", &dc).unwrap();
    assert_eq!(c.location, "dc", "--location overrides the file");
    assert_eq!(c.targets.len(), 2);

    let all = LoadOptions {
        location: None,
        every_location: true,
        shard: Shard::WHOLE,
    };
    assert_eq!(parse(&yaml, "t.yml", &all).unwrap().targets.len(), 2);
}

#[test]
fn each_shard_keeps_its_own_targets_and_adding_or_removing_targets_moves_none() {
    let config = |names: &[String]| {
        let mut yaml = String::from("location: dc\ntargets:\n");
        for name in names {
            yaml.push_str(&format!(
                "  - {{name: {name}, type: tcp, host: h, port: 1}}\n"
            ));
        }
        yaml.push_str(
            "  - {name: office-only, type: tcp, host: h, port: 1, locations: [office]}\n",
        );
        yaml
    };
    let names = |yaml: &str, shard: Shard| {
        let options = LoadOptions {
            shard,
            ..LoadOptions::default()
        };
        let c = parse(yaml, "t.yml", &options).unwrap();
        assert_eq!(
            c.elsewhere,
            ["office-only"],
            "the location filter comes first"
        );
        assert_eq!(c.shard, shard);
        let names: Vec<String> = c.targets.iter().map(|t| t.name.clone()).collect();
        (names, c.other_shards)
    };
    let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).unwrap()).collect();
    let first: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    let small = config(&first);
    let before: Vec<Vec<String>> = shards.iter().map(|&s| names(&small, s).0).collect();
    let mut all: Vec<String> = before.concat();
    all.sort();
    let mut expected = first.clone();
    expected.sort();
    assert_eq!(all, expected, "every target in exactly one shard");
    for (shard, kept) in shards.iter().zip(&before) {
        assert!(!kept.is_empty(), "shard {shard} has no targets of 60");
        assert_eq!(names(&small, *shard).1, 60 - kept.len());
    }

    // Positions change everywhere: 150 new targets before, between and after the old ones,
    // the first 20 old ones gone, the rest in reverse order.
    let mut second: Vec<String> = (0..50).map(|i| format!("new-{i}")).collect();
    for (i, old) in first[20..].iter().rev().enumerate() {
        second.push(old.clone());
        if i % 2 == 0 {
            second.push(format!("mid-{i}"));
        }
    }
    second.extend((0..80).map(|i| format!("late-{i}")));
    let big = config(&second);
    for (shard, kept) in shards.iter().zip(&before) {
        let (now, _) = names(&big, *shard);
        for name in kept.iter().filter(|n| second.contains(n)) {
            assert!(
                now.contains(name),
                "{name} left shard {shard} when others came, went and moved"
            );
        }
    }
    assert_eq!(second.len(), 190);
    assert!(ok(&big).summary().contains("targets: 190\n"));
    let c = parse(
        &small,
        "t.yml",
        &LoadOptions {
            shard: shards[1],
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert!(
        c.summary().contains(&format!(
            "targets: {} in shard 1/3, {} in the other shards\n",
            before[1].len(),
            60 - before[1].len()
        )),
        "{}",
        c.summary()
    );
}

#[test]
fn an_empty_locations_list_is_an_error() {
    single(
        &format!("{TCP}    locations: []\n"),
        6,
        16,
        "targets[0].locations",
        "one or more",
    );
}

#[test]
fn max_concurrent_probes_must_be_positive() {
    single(
        "max_concurrent_probes: 0\ntargets: []\n",
        1,
        24,
        "max_concurrent_probes",
        "from 1 to",
    );
    assert_eq!(
        ok("max_concurrent_probes: 8\ntargets: []\n").max_concurrent_probes,
        8
    );
}

#[test]
fn failure_reasons_is_possible_or_seen_for_every_target() {
    let targets = "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n";
    let default = ok(targets);
    assert_eq!(default.failure_reasons, FailureReasons::Possible);
    assert_eq!(default.targets[0].failure_reasons, FailureReasons::Possible);
    assert!(default.summary().contains("failure_reasons: possible"));
    let seen = ok(&format!("failure_reasons: seen\n{targets}"));
    assert_eq!(seen.targets[0].failure_reasons, FailureReasons::Seen);
    assert!(seen.summary().contains("failure_reasons: seen"));
    single(
        &format!("failure_reasons: zero\n{targets}"),
        1,
        18,
        "failure_reasons",
        "possible",
    );
}
