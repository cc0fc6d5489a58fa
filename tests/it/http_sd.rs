//! `target_sources` with `http_sd`: Debian's nginx serving a list file (with its own `ETag`s)
//! is polled as Prometheus polls; a changed list is followed; garbage, a list over
//! `max_targets`, a server that stalls and a server that is gone each keep the last list and
//! count a failure, while probing goes on.

use std::time::Duration;

use crate::support::{
    self, Nginx, TempDir, Vantage, closed_port, probed, quiet_peer, sample, wait_for,
};
use crate::target_sources::{names, scrape, value};

/// A list of `ports` on loopback, labelled `source: nginx`.
fn list(ports: &[u16]) -> String {
    crate::target_sources::list(ports, "\"source\": \"nginx\"")
}

/// nginx serving `dir/www` on `port`, logging `status|If-None-Match|refresh interval|Accept`
/// per request.
fn nginx(dir: &TempDir, port: u16) -> Nginx {
    let root = dir.0.display();
    let http = format!(
        "    log_format sd '$status|$http_if_none_match|$http_x_prometheus_refresh_interval_seconds|$http_accept';
    access_log {root}/access.log sd;
    types {{ application/json json; }}
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
    }}"
    );
    Nginx::start(&dir.0, &http, port)
}

#[test]
fn a_polled_list_is_followed_and_its_last_good_one_outlives_garbage_limits_and_outages() {
    support::needs(&["tool:nginx"]);
    let dir = TempDir::new("http-sd");
    std::fs::create_dir_all(dir.0.join("www")).unwrap();
    let write = |text: &str| {
        let tmp = dir.0.join("www/.sd.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.0.join("www/sd.json")).unwrap();
    };
    let p: Vec<u16> = (0..3).map(|_| quiet_peer()).collect();
    write(&list(&p[..1]));
    let port = closed_port();
    let server = nginx(&dir, port);
    // A server that takes the connection and never answers.
    let stalled = support::thread_peer(|stream| {
        std::thread::sleep(Duration::from_secs(30));
        drop(stream);
    });
    let config = dir.write(
        "exporter.yml",
        &format!(
            "modules:\n  tcp_check: {{type: tcp, interval: 1s, timeout: 500ms}}\ntargets:\n  - {{name: static, type: tcp, host: 127.0.0.1, port: {}, interval: 1s, timeout: 500ms}}\ntarget_sources:\n  - name: web\n    module: tcp_check\n    max_targets: 20\n    http_sd: {{url: 'http://127.0.0.1:{}/sd.json', refresh_interval: 1s, timeout: 500ms}}\n  - name: stalled\n    module: tcp_check\n    http_sd: {{url: 'http://127.0.0.1:{stalled}/sd.json', refresh_interval: 1s, timeout: 500ms}}\n",
            p[2], port
        ),
    );
    let vantage = Vantage::start(&config, &[]);
    let web = |family: &str| format!("{family}{{source=\"web\",type=\"http\"}}");
    let mut expected = names("web", &p[..1]);
    expected.insert("static".into());
    wait_for(Duration::from_secs(10), "the served list", || {
        probed(&vantage) == expected
    });
    let body = scrape(&vantage);
    assert!(
        body.contains("source=\"nginx\"} 1"),
        "the group's label:\n{body}"
    );
    assert_eq!(
        value(&body, &web("vantage_target_source_targets")),
        Some(1.0)
    );
    // Unchanged, the list costs a 304: the poll sends nginx's ETag back (its log writes `"` as
    // `\x22`).
    wait_for(Duration::from_secs(10), "a 304", || {
        Nginx::log(&dir.0)
            .iter()
            .any(|r| r.starts_with("304|\\x22"))
    });
    let first = &Nginx::log(&dir.0)[0];
    assert_eq!(first, "200|-|1|application/json", "{first}");

    write(&list(&p[..2]));
    let mut expected = names("web", &p[..2]);
    expected.insert("static".into());
    wait_for(Duration::from_secs(10), "the changed list", || {
        probed(&vantage) == expected
    });

    // Garbage, then a list over max_targets: each is a failure, and the last good list runs.
    let failures = |vantage: &Vantage| {
        value(
            &scrape(vantage),
            &web("vantage_target_source_failures_total"),
        )
    };
    write("<html>not a list</html>");
    wait_for(Duration::from_secs(10), "the garbage counted", || {
        failures(&vantage) == Some(1.0)
    });
    let many: Vec<u16> = (0..25).map(|i| 20_000 + i).collect();
    write(&list(&many));
    wait_for(Duration::from_secs(10), "the long list counted", || {
        failures(&vantage) == Some(2.0)
    });
    // An answer larger than 20 targets can need (20 KiB and 1 MiB) is not read.
    write(&format!("{}{}", " ".repeat(1_100_000), list(&p[..1])));
    wait_for(Duration::from_secs(10), "the long answer counted", || {
        failures(&vantage) == Some(3.0)
    });
    assert!(vantage.log().contains("more than max_targets entries need"));
    let body = scrape(&vantage);
    assert_eq!(
        value(&body, &web("vantage_target_source_targets")),
        Some(2.0)
    );
    assert_eq!(
        value(&body, &web("vantage_target_source_last_refresh_successful")),
        Some(0.0)
    );
    assert_eq!(probed(&vantage), expected);
    assert!(
        vantage
            .log()
            .contains("more targets than the source's max_targets (20)")
    );

    // The server gone: polls fail, the list stays, and probing goes on meanwhile.
    write(&list(&p[..2]));
    wait_for(Duration::from_secs(10), "the good list again", || {
        value(
            &scrape(&vantage),
            &web("vantage_target_source_last_refresh_successful"),
        ) == Some(1.0)
    });
    let runs = |vantage: &Vantage| sample(&scrape(vantage), "probe_runs_total", "static");
    drop(server);
    let before = (failures(&vantage).unwrap(), runs(&vantage));
    std::thread::sleep(Duration::from_secs(3));
    let body = scrape(&vantage);
    assert!(value(&body, &web("vantage_target_source_failures_total")).unwrap() >= before.0 + 2.0);
    assert_eq!(probed(&vantage), expected, "the last list keeps running");
    assert!(
        runs(&vantage) >= before.1 + 2.0,
        "probing went on while polls failed"
    );
    // The stalled server: every poll gave up at its timeout.
    let stalled_failures = value(
        &body,
        "vantage_target_source_failures_total{source=\"stalled\",type=\"http\"}",
    )
    .unwrap();
    assert!(stalled_failures >= 3.0, "{body}");
    assert_eq!(
        value(
            &body,
            "vantage_target_source_targets{source=\"stalled\",type=\"http\"}"
        ),
        Some(0.0)
    );
}
