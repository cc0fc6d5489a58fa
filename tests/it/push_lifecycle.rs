//! remote_write over time: a series that stops applying and a target a reload removes get
//! staleness markers, and a reload that changes a receiver keeps its queue and counts while
//! one it removes goes away; against the receiver of `remote_write`.

use std::net::TcpListener;
use std::time::Duration;

use crate::remote_write::Receiver;
use crate::support::{TempDir, Vantage, closed_port, http_get, quiet_peer, wait_for};

/// The staleness marker's bits (Prometheus' `value.StaleNaN`).
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn is_stale(value: f64) -> bool {
    value.to_bits() == STALE_NAN
}

#[test]
fn a_recovery_and_a_removal_send_staleness_markers() {
    let receiver = Receiver::start(|_| Some((204, "")));
    let dir = TempDir::new("push-stale");
    let down = closed_port();
    let up = quiet_peer();
    let remote = format!(
        "remote_write:\n  - url: {}\n    self_metrics_interval: 0s\n    queue: {{batch_send_deadline: 200ms}}\n",
        receiver.url()
    );
    let targets = |both: bool| {
        let mut yaml = format!(
            "defaults: {{interval: 1s, timeout: 500ms}}\ntargets:\n  - {{name: recovering, type: tcp, host: 127.0.0.1, port: {down}}}\n"
        );
        if both {
            yaml.push_str(&format!(
                "  - {{name: removed, type: tcp, host: 127.0.0.1, port: {up}}}\n"
            ));
        }
        yaml + &remote
    };
    let path = dir.write("exporter.yml", &targets(true));
    let vantage = Vantage::start(&path, &[]);
    let failure_info = || {
        receiver
            .samples("probe_failure_info")
            .into_iter()
            .filter(|(l, _, _)| l.get("name").map(String::as_str) == Some("recovering"))
            .collect::<Vec<_>>()
    };
    wait_for(Duration::from_secs(10), "the failure pushed", || {
        failure_info().iter().any(|(_, _, v)| *v == 1.0)
    });
    // The port opens: the next run succeeds, and probe_failure_info ends with a marker.
    let listener = TcpListener::bind(("127.0.0.1", down)).unwrap();
    std::thread::spawn(move || for _stream in listener.incoming() {});
    wait_for(
        Duration::from_secs(10),
        "the failure's staleness marker",
        || failure_info().iter().any(|(_, _, v)| is_stale(*v)),
    );
    let info = failure_info();
    let marker = info.iter().position(|(_, _, v)| is_stale(*v)).unwrap();
    assert!(
        info[..marker].iter().all(|(_, _, v)| *v == 1.0),
        "values while failing, then the marker: {info:?}"
    );
    let success = receiver.samples("probe_success");
    let recovered_at = success
        .iter()
        .find(|(l, _, v)| l.get("name").map(String::as_str) == Some("recovering") && *v == 1.0)
        .map(|(_, t, _)| *t)
        .expect("the success pushed");
    assert_eq!(
        info[marker].1, recovered_at,
        "the marker carries the recovering run's time"
    );

    // A reload without `removed`: each of its series gets a marker, at once.
    let removed_series = |stale: bool| {
        receiver
            .received()
            .iter()
            .flat_map(|r| r.decode().timeseries)
            .filter(|ts| {
                ts.labels
                    .iter()
                    .any(|l| l.name == "name" && l.value == "removed")
            })
            .filter(|ts| ts.samples.iter().any(|s| is_stale(s.value) == stale))
            .map(|ts| {
                ts.labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .unwrap()
                    .value
                    .clone()
            })
            .collect::<std::collections::BTreeSet<String>>()
    };
    assert!(
        removed_series(true).is_empty(),
        "no marker before the reload"
    );
    dir.write("exporter.yml", &targets(false));
    vantage.signal("HUP");
    wait_for(
        Duration::from_secs(5),
        "markers for the removed target",
        || !removed_series(true).is_empty(),
    );
    wait_for(Duration::from_secs(3), "a marker for every series", || {
        removed_series(true) == removed_series(false)
    });
    assert!(removed_series(true).contains("probe_success"));
}

/// The `remote_name` values of the push's series in a scrape, with their sent counts.
fn sent(vantage: &Vantage) -> Vec<(String, f64)> {
    let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
    body.lines()
        .filter_map(|l| l.strip_prefix("vantage_remote_write_samples_total{remote_name=\""))
        .map(|l| {
            let (name, rest) = l.split_once('"').unwrap();
            (
                name.to_string(),
                rest.rsplit(' ').next().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_reload_moves_a_receiver_keeping_its_counts_and_drops_a_removed_one() {
    let (first, second, spare) = (
        Receiver::start(|_| Some((204, ""))),
        Receiver::start(|_| Some((204, ""))),
        Receiver::start(|_| Some((204, ""))),
    );
    let dir = TempDir::new("push-reload");
    let port = quiet_peer();
    let config = |url: &str, extra: bool| {
        let mut yaml = format!(
            "defaults: {{interval: 1s, timeout: 500ms}}\ntargets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: {port}}}\nremote_write:\n  - {{url: \"{url}\", name: central, self_metrics_interval: 0s, queue: {{batch_send_deadline: 200ms}}}}\n"
        );
        if extra {
            yaml.push_str(&format!(
                "  - {{url: \"{}\", name: spare, self_metrics_interval: 0s}}\n",
                spare.url()
            ));
        }
        yaml
    };
    let path = dir.write("exporter.yml", &config(&first.url(), true));
    let vantage = Vantage::start(&path, &[]);
    wait_for(
        Duration::from_secs(10),
        "three runs at the first receiver",
        || first.samples("probe_success").len() >= 3,
    );
    let before = sent(&vantage);
    assert_eq!(
        before.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["central", "spare"]
    );
    let central_before = before[0].1;
    assert!(central_before > 0.0);

    // central moves to the second receiver; spare is removed.
    dir.write("exporter.yml", &config(&second.url(), false));
    vantage.signal("HUP");
    assert!(
        second.received().is_empty(),
        "nothing went there before the reload"
    );
    wait_for(
        Duration::from_secs(10),
        "runs at the moved receiver",
        || second.samples("probe_success").len() >= 3,
    );
    let after = sent(&vantage);
    assert_eq!(after.len(), 1, "spare's series are gone: {after:?}");
    assert_eq!(after[0].0, "central");
    assert!(
        after[0].1 > central_before,
        "central's count carries on: {central_before} then {}",
        after[0].1
    );
    let log = vantage.log();
    assert!(log.contains("receiver's settings changed"), "{log}");
    assert!(log.contains("no longer configured"), "{log}");
}
