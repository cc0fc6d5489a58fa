//! What a target's fingerprint sees, and the parser's limits.

use super::*;

/// Each target's fingerprint, by name.
fn fingerprints(yaml: &str, file: &str, location: Option<&str>) -> BTreeMap<String, u64> {
    let options = LoadOptions {
        location: location.map(str::to_string),
        every_location: false,
        shard: Shard::WHOLE,
    };
    parse(yaml, file, &options)
        .unwrap_or_else(|e| panic!("{e}"))
        .targets
        .iter()
        .map(|t| (t.name.clone(), t.fingerprint))
        .collect()
}

#[test]
fn fingerprints_ignore_layout_and_position_but_see_every_setting() {
    let base = "labels: {team: a}\ndefaults: {timeout: 2s}\ntargets:\n  - {name: x, type: tcp, host: 127.0.0.1, port: 1}\n  - {name: y, type: http, url: 'http://127.0.0.1:2/', http: {headers: {Authorization: Bearer one}}}\n";
    let before = fingerprints(base, "t.yml", None);
    assert_ne!(before["x"], before["y"]);

    let moved = "# moved and reformatted\nlabels:\n  team: a\ndefaults:\n  timeout: 2s\ntargets:\n  - {name: new, type: tcp, host: 127.0.0.1, port: 3}\n  - name: y\n    type: http\n    url: 'http://127.0.0.1:2/'\n    http:\n      headers:\n        Authorization: Bearer one\n  - name: x   # a comment\n    type: tcp\n    host: 127.0.0.1\n    port: 1\n";
    let after = fingerprints(moved, "t.yml", None);
    assert_eq!((after["x"], after["y"]), (before["x"], before["y"]));

    let changed = |from: &str, to: &str| {
        assert!(base.contains(from));
        fingerprints(&base.replace(from, to), "t.yml", None)
    };
    // A target's own setting changes that target only.
    let port = changed("port: 1}", "port: 4}");
    assert_ne!(port["x"], before["x"]);
    assert_eq!(port["y"], before["y"]);
    // An inline secret, which the built target only holds as a sensitive header value.
    let secret = changed("Bearer one", "Bearer two");
    assert_ne!(secret["y"], before["y"]);
    assert_eq!(secret["x"], before["x"]);
    // What every target inherits changes every target.
    for (from, to) in [
        ("timeout: 2s", "timeout: 3s"),
        ("team: a", "team: b"),
        ("labels:", "failure_reasons: seen\nlabels:"),
    ] {
        let all = changed(from, to);
        assert!(all["x"] != before["x"] && all["y"] != before["y"], "{to}");
    }
    assert_eq!(
        changed("labels:", "failure_reasons: possible\nlabels:"),
        before,
        "the default written out changes nothing"
    );
    let elsewhere = fingerprints(base, "t.yml", Some("office"));
    assert!(elsewhere["x"] != before["x"] && elsewhere["y"] != before["y"]);
}

#[test]
fn fingerprints_see_the_content_of_the_files_a_target_reads() {
    let dir = std::env::temp_dir().join(format!("vantage-fingerprint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exporter.yml");
    let file = file.to_str().unwrap();
    let yaml = "targets:\n  - {name: w, type: http, url: 'http://127.0.0.1:2/', http: {headers: {Authorization: {file: token}}}}\n  - {name: z, type: tcp, host: 127.0.0.1, port: 1}\n";
    std::fs::write(dir.join("token"), "Bearer one\n").unwrap();
    let before = fingerprints(yaml, file, None);
    assert_eq!(before, fingerprints(yaml, file, None), "stable");
    std::fs::write(dir.join("token"), "Bearer two\n").unwrap();
    let after = fingerprints(yaml, file, None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_ne!(
        after["w"], before["w"],
        "a rotated token restarts the target"
    );
    assert_eq!(after["z"], before["z"]);
}

#[test]
fn a_config_of_30000_targets_is_within_the_parsers_limits() {
    // serde-saphyr's default budget (250,000 nodes) refused this at target 27,776.
    let mut yaml = String::from("targets:\n");
    for i in 0..30_000 {
        let _ = writeln!(
            yaml,
            "  - {{name: t{i}, type: tcp, host: 127.0.0.{}, port: 80}}",
            1 + i % 254
        );
    }
    let config = ok(&yaml);
    assert_eq!(config.targets.len(), 30_000);
    assert_eq!(config.targets[29_999].name, "t29999");
}
