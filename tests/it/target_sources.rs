//! `target_sources` with `file_sd`, against the real binary: lists replaced by atomic rename,
//! by a ConfigMap-style `..data` symlink swap and by new files matching the pattern; a bad list
//! keeps the last good one; series of unchanged targets keep counting; sharding and locations
//! apply to discovered targets; a target that leaves the list gets staleness markers under
//! remote_write.

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use crate::remote_write::Receiver;
use std::process::Command;

use crate::support::{
    TempDir, Vantage, http_get, probed, quiet_peer, sample, vantage_bin, wait_for,
};

/// The value of the first series of a scrape that starts with `prefix`.
pub fn value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn scrape(vantage: &Vantage) -> String {
    http_get(vantage.addr, "/metrics", None)
        .map(|r| r.body)
        .unwrap_or_default()
}

/// Writes `text` to `path` as a generator should: a hidden file in the same folder, renamed
/// over the old one, so that no reader ever sees half a list.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The names the targets on `ports` of `source`'s list get: `SOURCE/TARGET`.
pub fn names(source: &str, ports: &[u16]) -> BTreeSet<String> {
    ports
        .iter()
        .map(|p| format!("{source}/127.0.0.1:{p}"))
        .collect()
}

/// The names of `files`' and `configmap`'s targets on those ports, and `extra`.
fn both(files: &[u16], configmap: &[u16], extra: &[&str]) -> BTreeSet<String> {
    let mut all = names("files", files);
    all.extend(names("configmap", configmap));
    all.extend(extra.iter().map(|e| e.to_string()));
    all
}

/// A list in Prometheus' SD format: one group of `ports` on loopback, with `labels` (JSON).
pub fn list(ports: &[u16], labels: &str) -> String {
    let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
    format!(
        "[{{\"targets\": [{}], \"labels\": {{{labels}}}}}]\n",
        targets.join(", ")
    )
}

const MODULE: &str = "modules:\n  tcp_check: {type: tcp, interval: 1s, timeout: 500ms}\n";

#[test]
fn file_lists_follow_renames_symlink_swaps_and_new_files_and_a_bad_one_keeps_the_last_good() {
    let dir = TempDir::new("file-sd");
    let p: Vec<u16> = (0..5).map(|_| quiet_peer()).collect();
    std::fs::create_dir_all(dir.0.join("sd")).unwrap();
    std::fs::create_dir_all(dir.0.join("cm/..v1")).unwrap();
    std::fs::write(dir.0.join("sd/a.json"), list(&p[..2], "\"team\": \"core\"")).unwrap();
    // The kubelet's layout: targets.yml -> ..data/targets.yml, ..data -> ..v1.
    std::fs::write(
        dir.0.join("cm/..v1/targets.yml"),
        format!(
            "- targets: ['127.0.0.1:{}']\n- targets: ['127.0.0.1:{}']\n  labels: {{__meta_vantage_name: far, __meta_vantage_locations: 'elsewhere'}}\n- targets: ['127.0.0.1:{}']\n  labels: {{__meta_vantage_name: near, __meta_vantage_locations: 'other, lab'}}\n",
            p[2], p[3], p[4]
        ),
    )
    .unwrap();
    symlink("..v1", dir.0.join("cm/..data")).unwrap();
    symlink("..data/targets.yml", dir.0.join("cm/targets.yml")).unwrap();
    let config = dir.write(
        "exporter.yml",
        &format!(
            "location: lab\n{MODULE}target_sources:\n  - name: files\n    module: tcp_check\n    file_sd: {{files: [sd/*.json]}}\n  - name: configmap\n    module: tcp_check\n    file_sd: {{files: [cm/targets.yml]}}\n"
        ),
    );
    // Named relative to vantage's working folder, as `--config.file=exporter.yml` is.
    assert!(config.ends_with("exporter.yml"));
    let mut command = Command::new(vantage_bin());
    command.current_dir(&dir.0);
    let vantage = Vantage::start_as(command, Path::new("exporter.yml"), &[]);
    let expected = both(&p[..2], &p[2..3], &["near"]);
    wait_for(Duration::from_secs(10), "the listed targets", || {
        probed(&vantage) == expected
    });
    let body = scrape(&vantage);
    assert!(
        body.contains(&format!(
            "probe_success{{name=\"files/127.0.0.1:{}\",probe=\"tcp\",target=\"127.0.0.1:{}\",location=\"lab\",team=\"core\"}} 1",
            p[0], p[0]
        )),
        "the group's label on its targets' series:\n{body}"
    );
    assert_eq!(
        value(
            &body,
            "vantage_target_source_targets{source=\"files\",type=\"file\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &body,
            "vantage_target_source_targets{source=\"configmap\",type=\"file\"}"
        ),
        Some(3.0),
        "every listed target counts, also those of other locations"
    );
    let stays = format!("files/127.0.0.1:{}", p[0]);
    let runs = |body: &str| sample(body, "probe_runs_total", &stays);
    let before = runs(&body);

    // An atomic rename: one target goes, another comes; the one that stays keeps counting.
    replace(
        &dir.0.join("sd/a.json"),
        &list(&[p[0], p[3]], "\"team\": \"core\""),
    );
    let expected = both(&[p[0], p[3]], &p[2..3], &["near"]);
    wait_for(Duration::from_secs(10), "the renamed list", || {
        probed(&vantage) == expected
    });
    assert!(
        runs(&scrape(&vantage)) >= before,
        "an unchanged target keeps its series"
    );
    let log = vantage.log();
    assert!(
        log.contains("trigger=\"file change\"")
            && log.contains("added=1 changed=0 removed=1 unchanged=3"),
        "the list applied as a diff, the three that stayed untouched: {log}"
    );

    // A ConfigMap update: a new ..v2, and ..data swapped to it by rename.
    std::fs::create_dir_all(dir.0.join("cm/..v2")).unwrap();
    std::fs::write(
        dir.0.join("cm/..v2/targets.yml"),
        format!("- targets: ['127.0.0.1:{}']\n", p[1]),
    )
    .unwrap();
    symlink("..v2", dir.0.join("cm/..data_tmp")).unwrap();
    std::fs::rename(dir.0.join("cm/..data_tmp"), dir.0.join("cm/..data")).unwrap();
    wait_for(Duration::from_secs(10), "the swapped ConfigMap", || {
        probed(&vantage) == both(&[p[0], p[3]], &p[1..2], &[])
    });

    // A new file that matches the pattern.
    replace(&dir.0.join("sd/b.json"), &list(&[p[4]], ""));
    wait_for(Duration::from_secs(10), "the new file's target", || {
        probed(&vantage) == both(&[p[0], p[3], p[4]], &p[1..2], &[])
    });

    // A bad list: the source keeps its last good one, and says where the mistake is.
    replace(&dir.0.join("sd/b.json"), &list(&[p[2]], "\"job\": \"x\""));
    let failed = |body: &str| {
        value(
            body,
            "vantage_target_source_failures_total{source=\"files\",type=\"file\"}",
        )
    };
    wait_for(Duration::from_secs(10), "the bad list counted", || {
        failed(&scrape(&vantage)) == Some(1.0)
    });
    let body = scrape(&vantage);
    assert_eq!(
        value(
            &body,
            "vantage_target_source_last_refresh_successful{source=\"files\",type=\"file\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &body,
            "vantage_target_source_targets{source=\"files\",type=\"file\"}"
        ),
        Some(3.0),
        "the last good list"
    );
    assert_eq!(probed(&vantage), both(&[p[0], p[3], p[4]], &p[1..2], &[]));
    let log = vantage.log();
    assert!(
        log.contains("b.json:1:") && log.contains("\\\"job\\\""),
        "the log names the file, line and label: {log}"
    );
    assert!(log.contains("its last good list keeps running"), "{log}");

    // Fixed by removing the file: its target goes, and the source is good again.
    std::fs::remove_file(dir.0.join("sd/b.json")).unwrap();
    wait_for(Duration::from_secs(10), "the fixed source", || {
        let body = scrape(&vantage);
        value(
            &body,
            "vantage_target_source_last_refresh_successful{source=\"files\",type=\"file\"}",
        ) == Some(1.0)
            && probed(&vantage) == both(&[p[0], p[3]], &p[1..2], &[])
    });
    assert_eq!(
        failed(&scrape(&vantage)),
        Some(1.0),
        "one bad list, counted once"
    );
}

#[test]
fn shards_split_discovered_targets() {
    let dir = TempDir::new("file-sd-shard");
    let port = quiet_peer();
    let groups: Vec<String> = (0..12)
        .map(|i| {
            format!(
                "{{\"targets\": [\"127.0.0.1:{port}\"], \"labels\": {{\"__meta_vantage_name\": \"svc-{i}\"}}}}"
            )
        })
        .collect();
    dir.write("targets.json", &format!("[{}]\n", groups.join(",\n")));
    let config = dir.write(
        "exporter.yml",
        &format!(
            "{MODULE}target_sources:\n  - name: list\n    module: tcp_check\n    file_sd: {{files: [targets.json]}}\n"
        ),
    );
    let replicas: Vec<Vantage> = (0..2)
        .map(|i| Vantage::start(&config, &[&format!("--shard={i}/2")]))
        .collect();
    let mut sets = Vec::new();
    wait_for(Duration::from_secs(15), "every target probed", || {
        sets = replicas.iter().map(probed).collect::<Vec<_>>();
        sets.iter().map(BTreeSet::len).sum::<usize>() >= 12
    });
    let all: BTreeSet<&String> = sets.iter().flatten().collect();
    assert_eq!(all.len(), 12, "{sets:?}");
    assert_eq!(
        sets[0].len() + sets[1].len(),
        12,
        "a target in both shards: {sets:?}"
    );
    assert!(!sets[0].is_empty() && !sets[1].is_empty(), "{sets:?}");
}

#[test]
fn a_target_that_leaves_the_list_gets_staleness_markers() {
    let receiver = Receiver::start(|_| Some((204, "")));
    let dir = TempDir::new("file-sd-stale");
    let (a, b) = (quiet_peer(), quiet_peer());
    let path = dir.write("targets.json", &list(&[a, b], ""));
    let config = dir.write(
        "exporter.yml",
        &format!(
            "{MODULE}target_sources:\n  - name: list\n    module: tcp_check\n    file_sd: {{files: [targets.json]}}\nremote_write:\n  - url: {}\n    self_metrics_interval: 0s\n    queue: {{batch_send_deadline: 200ms}}\n",
            receiver.url()
        ),
    );
    let vantage = Vantage::start(&config, &[]);
    let leaving = format!("list/127.0.0.1:{b}");
    let success = |stale: bool| {
        receiver
            .samples("probe_success")
            .into_iter()
            .filter(|(l, _, v)| {
                l.get("name") == Some(&leaving) && (v.to_bits() == 0x7ff0_0000_0000_0002) == stale
            })
            .count()
    };
    // Both have run (each on its own slot), and the one that leaves was pushed.
    wait_for(Duration::from_secs(10), "the target's runs pushed", || {
        success(false) > 0 && probed(&vantage) == names("list", &[a, b])
    });
    assert_eq!(success(true), 0);
    replace(&path, &list(&[a], ""));
    wait_for(
        Duration::from_secs(10),
        "a marker for the target that left",
        || success(true) == 1,
    );
    assert_eq!(probed(&vantage), names("list", &[a]));
}
