//! Issue 23, item 6: what `check-config` accepted although it is almost certainly a mistake,
//! and the limits that now refuse it (`build::limits`).

use super::*;

/// The whole message of the only error, with its place.
#[track_caller]
fn exactly(yaml: &str, expected: &str) {
    let errs = errors(yaml);
    assert_eq!(errs.len(), 1, "expected one error, got: {errs:#?}");
    assert_eq!(errs[0].to_string(), expected);
}

#[test]
fn issue_23_labels_job_and_instance_are_refused() {
    exactly(
        "labels: {job: probes}\ntargets: []\n",
        "t.yml:1:9: labels.job: \"job\" is a label Prometheus sets on every series it scrapes \
         (naming vantage itself): this one would be stored as exported_job; choose another name",
    );
    single(
        &format!("{TCP}    labels: {{instance: db-1}}\n"),
        6,
        13,
        "targets[0].labels.instance",
        "exported_instance",
    );
    // Names that merely contain them are fine.
    ok(&format!(
        "{TCP}    labels: {{job_owner: x, db_instance: y}}\n"
    ));
}

#[test]
fn issue_23_expect_addresses_of_the_other_family_are_refused() {
    let dns = "targets:\n  - name: d\n    type: dns\n    host: example.com\n";
    exactly(
        &format!("{dns}    dns: {{record_type: A, expect_addresses: [10.0.0.1, '::1']}}\n"),
        "t.yml:5:56: targets[0].dns.expect_addresses[1]: ::1 is an IPv6 address, which A records \
         never hold: ask for AAAA records in a target of its own",
    );
    // A is the default record type.
    single(
        &format!("{dns}    dns: {{expect_addresses: ['2001:db8::1']}}\n"),
        5,
        30,
        "targets[0].dns.expect_addresses[0]",
        "A records never hold",
    );
    single(
        &format!("{dns}    dns: {{record_type: AAAA, expect_addresses: [10.0.0.1]}}\n"),
        5,
        49,
        "targets[0].dns.expect_addresses[0]",
        "10.0.0.1 is an IPv4 address, which AAAA records never hold",
    );
    ok(&format!(
        "{dns}    dns: {{record_type: AAAA, expect_addresses: ['2001:db8::1']}}\n"
    ));
}

#[test]
fn issue_23_intervals_and_timeouts_below_their_floor_are_refused() {
    exactly(
        &format!("{TCP}    timeout: 1s\n    interval_on_failure: 2ms\n"),
        "t.yml:7:26: targets[0].interval_on_failure: must be at least 1s, not 2ms \
         (`ms` is milliseconds; minutes are `m`)",
    );
    single(
        &format!("{TCP}    interval: 500ms\n    timeout: 100ms\n"),
        6,
        15,
        "targets[0].interval",
        "must be at least 1s, not 500ms",
    );
    single(
        "defaults:\n  interval: 900ms\n  timeout: 100ms\ntargets: []\n",
        2,
        13,
        "defaults.interval",
        "at least 1s",
    );
    single(
        &format!("{TCP}    timeout: 5ms\n"),
        6,
        14,
        "targets[0].timeout",
        "must be at least 10ms, not 5ms",
    );
    // The floors themselves are fine.
    ok(&format!(
        "{TCP}    interval: 1s\n    timeout: 10ms\n    interval_on_failure: 1s\n"
    ));
}

#[test]
fn issue_23_a_5_mb_target_name_is_refused_without_being_repeated() {
    let huge = "x".repeat(5 << 20);
    let yaml = format!(
        "targets:\n  - {{name: {huge}, type: tcp, host: h, port: 1}}\n  - {{name: {huge}, type: tcp, host: h, port: 1}}\n"
    );
    let errs = errors(&yaml);
    let messages: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        vec![
            "t.yml:2:12: targets[0].name: the name is 5242880 characters long; the limit is 256",
            "t.yml:3:12: targets[1].name: the name is 5242880 characters long; the limit is 256",
        ]
    );
    ok(&format!(
        "targets:\n  - {{name: {}, type: tcp, host: h, port: 1}}\n",
        "é".repeat(256)
    ));
}

#[test]
fn issue_23_names_with_bidirectional_overrides_are_refused() {
    exactly(
        "targets:\n  - {name: \"invoice\\u202Egpj.exe\", type: tcp, host: h, port: 1}\n",
        "t.yml:2:12: targets[0].name: the name contains U+202E, an invisible character that \
         changes how text displays",
    );
    for c in ["\\u2066", "\\u200F", "\\u200B", "\\uFEFF", "\\u2028"] {
        single(
            &format!("targets:\n  - {{name: \"a{c}b\", type: tcp, host: h, port: 1}}\n"),
            2,
            12,
            "targets[0].name",
            "invisible character",
        );
    }
    single(
        "targets:\n  - {name: \"a\\tb\", type: tcp, host: h, port: 1}\n",
        2,
        12,
        "targets[0].name",
        "control character U+0009",
    );
    single(
        &format!("{TCP}    labels: {{team: \"core\\u202Eevil\"}}\n"),
        6,
        20,
        "targets[0].labels.team",
        "the value contains U+202E",
    );
    ok("targets:\n  - {name: \"Zürich → 東京 🚀\", type: tcp, host: h, port: 1}\n");
}

#[test]
fn issue_23_20000_labels_on_one_target_are_refused() {
    let many: Vec<String> = (0..20_000).map(|i| format!("l{i}: v")).collect();
    exactly(
        &format!("{TCP}    labels: {{{}}}\n", many.join(", ")),
        "t.yml:6:13: targets[0].labels: 20000 labels; the limit is 64 per target (every label \
         multiplies what Prometheus stores: put what describes many targets in the global \
         `labels`)",
    );
    // The global ones count on every target.
    let half = |from: usize| -> String {
        (from..from + 40)
            .map(|i| format!("l{i}: v"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    single(
        &format!(
            "labels: {{{}}}\n{TCP}    labels: {{{}}}\n",
            half(0),
            half(100)
        ),
        7,
        13,
        "targets[0].labels",
        "80 labels with the global ones; the limit is 64",
    );
    // Too many global ones are reported once, at the global table, not at every target too.
    let seventy: Vec<String> = (0..70).map(|i| format!("g{i}: v")).collect();
    single(
        &format!(
            "labels: {{{}}}\n{TCP}    labels: {{team: x}}\n",
            seventy.join(", ")
        ),
        1,
        9,
        "labels",
        "70 labels; the limit is 64",
    );
    let sixty_four: Vec<String> = (0..64).map(|i| format!("l{i}: v")).collect();
    ok(&format!("{TCP}    labels: {{{}}}\n", sixty_four.join(", ")));
}

#[test]
fn issue_23_label_names_and_values_are_bounded() {
    let long_name = "n".repeat(129);
    exactly(
        &format!("labels: {{{long_name}: v}}\ntargets: []\n"),
        "t.yml:1:9: labels.<129 characters>: a label name of 129 characters; the limit is 128",
    );
    single(
        &format!("labels: {{team: {}}}\ntargets: []\n", "v".repeat(1025)),
        1,
        16,
        "labels.team",
        "the value is 1025 characters long; the limit is 1024",
    );
    ok(&format!(
        "labels: {{{}: {}}}\ntargets: []\n",
        "n".repeat(128),
        "v".repeat(1024)
    ));
}

#[test]
fn issue_23_a_100000_character_http_method_is_refused() {
    exactly(
        &format!(
            "{HTTP_TARGET}    http: {{method: {}}}\n",
            "GET".repeat(33_334)
        ),
        "t.yml:5:20: targets[0].http.method: method is 100002 characters long; no method is \
         longer than 32",
    );
    ok(&format!(
        "{HTTP_TARGET}    http: {{method: UPDATEREDIRECTREF}}\n"
    ));
}

const HTTP_TARGET: &str = "targets:\n  - name: w\n    type: http\n    url: http://127.0.0.1/\n";

#[test]
fn issue_23_hosts_that_name_no_single_host_are_refused() {
    exactly(
        "targets:\n  - {name: a, type: tcp, host: 0.0.0.0, port: 80}\n",
        "t.yml:2:32: targets[0].host: 0.0.0.0 is the unspecified address, which names no host: \
         a probe checks one host, so give the address of one",
    );
    for (yaml, needle) in [
        ("{name: a, type: tcp, host: '::', port: 80}", "unspecified"),
        (
            "{name: a, type: tcp, host: 255.255.255.255, port: 80}",
            "broadcast",
        ),
        (
            "{name: a, type: tcp, host: 239.1.2.3, port: 80}",
            "multicast",
        ),
        ("{name: a, type: icmp, host: 255.255.255.255}", "broadcast"),
        ("{name: a, type: icmp, host: 224.0.0.1}", "multicast"),
        ("{name: a, type: icmp, host: 'ff02::1'}", "multicast"),
    ] {
        single(
            &format!("targets:\n  - {yaml}\n"),
            2,
            if yaml.contains("icmp") { 33 } else { 32 },
            "targets[0].host",
            needle,
        );
    }
    for (url, needle) in [
        ("http://0.0.0.0:9100/metrics", "unspecified"),
        ("https://255.255.255.255/", "broadcast"),
        ("http://[ff05::2]/", "multicast"),
    ] {
        single(
            &format!("targets:\n  - {{name: a, type: http, url: \"{url}\"}}\n"),
            2,
            32,
            "targets[0].url",
            needle,
        );
    }
    // A resolver's address is a destination too.
    single(
        "targets:\n  - {name: a, type: dns, host: example.com, dns: {server: 0.0.0.0}}\n",
        2,
        59,
        "targets[0].dns.server",
        "unspecified",
    );
    single(
        "targets:\n  - {name: a, type: tcp, host: example.com, port: 1, dns: {server: '224.0.0.251:5353'}}\n",
        2,
        68,
        "targets[0].dns.server",
        "multicast",
    );
    // A dns target's host is the name asked about: a reverse lookup of any address is fine.
    ok("targets:\n  - {name: a, type: dns, host: 0.0.0.0, dns: {record_type: PTR}}\n");
    // So is a subnet's last address: without the netmask it may be a host.
    ok("targets:\n  - {name: a, type: tcp, host: 10.0.0.255, port: 80}\n");
}
