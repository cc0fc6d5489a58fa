//! Hot reload, end to end: every trigger (file watch, SIGHUP, `POST /-/reload`), a bad file
//! that changes nothing, history kept across reloads, and many large reloads that leak nothing.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vantage::config::LoadOptions;
use vantage::reload::{self, ReloadStatus, Reloaded, Reloader, Trigger};
use vantage::scheduler::Telemetry;
use vantage::scheduler::{Limiter, Probes, Shared};
use vantage::store::{Entry, Store};

use crate::support::{
    TempDir, Vantage, http_get, http_request, read_request_head, thread_peer, wait_for,
};

/// Accepts connections and reads each until the client closes it.
fn quiet_peer() -> u16 {
    thread_peer(|mut stream| {
        let mut buf = [0u8; 256];
        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
    })
}

fn tcp_target(name: &str, port: u16, extra: &str) -> String {
    format!("  - {{name: {name}, type: tcp, host: 127.0.0.1, port: {port}{extra}}}\n")
}

fn scrape(addr: SocketAddr) -> String {
    http_get(addr, "/metrics", None)
        .expect("vantage answers /metrics")
        .body
}

/// The value of the one series of `metric` whose labels include every pair of `labels`.
fn value(body: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let prefix = format!("{metric}{{");
    let mut found = body.lines().filter(|l| {
        (l.starts_with(&prefix) || (labels.is_empty() && l.starts_with(&format!("{metric} "))))
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
    });
    let line = found.next()?;
    assert!(found.next().is_none(), "several {metric} {labels:?} series");
    line.rsplit(' ').next()?.parse().ok()
}

fn reloads(body: &str, result: &str) -> f64 {
    value(body, "vantage_config_reloads_total", &[("result", result)]).unwrap()
}

/// Names of the targets that have a `probe_runs_total` series.
fn probed(body: &str) -> Vec<String> {
    let mut names: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with("probe_runs_total{"))
        .filter_map(|l| Some(l.split("name=\"").nth(1)?.split('"').next()?.to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn wait_for_targets(addr: SocketAddr, names: &[&str]) {
    wait_for(
        Duration::from_secs(10),
        &format!("targets {names:?}"),
        || probed(&scrape(addr)) == names,
    );
}

fn post_reload(addr: SocketAddr) -> (u16, String) {
    let r = http_request(addr, "POST", "/-/reload", None).expect("an answer to POST /-/reload");
    (r.status, r.body)
}

fn config(targets: &str) -> String {
    format!("defaults: {{interval: 1s, timeout: 500ms}}\ntargets:\n{targets}")
}

/// Makes `link` a symlink to `to`, replacing whatever `link` was, in one rename (as the kubelet
/// swaps `..data`).
fn swap_symlink(to: &str, link: &Path) {
    let tmp = link.with_file_name("..data_tmp");
    std::os::unix::fs::symlink(to, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn configmap_updates_are_applied_each_time_and_the_watch_survives_them() {
    let peer = quiet_peer();
    let dir = TempDir::new("configmap");
    // The kubelet's layout: exporter.yml -> ..data/exporter.yml, ..data -> ..<version>.
    let version = |n: usize, name: &str| {
        let folder = dir.0.join(format!("..v{n}"));
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(
            folder.join("exporter.yml"),
            config(&tcp_target(name, peer, "")),
        )
        .unwrap();
    };
    version(1, "first");
    std::os::unix::fs::symlink("..v1", dir.0.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/exporter.yml", dir.0.join("exporter.yml")).unwrap();
    let vantage = Vantage::start(&dir.0.join("exporter.yml"), &[]);
    wait_for_targets(vantage.addr, &["first"]);

    // Two swaps, and a third to show the watch is still alive after the second.
    for (n, name) in [(2, "second"), (3, "third"), (4, "fourth")] {
        // As the kubelet updates a ConfigMap: a new version folder, the `..data` link swapped
        // by a rename, the old version deleted.
        version(n, name);
        swap_symlink(&format!("..v{n}"), &dir.0.join("..data"));
        std::fs::remove_dir_all(dir.0.join(format!("..v{}", n - 1))).unwrap();
        wait_for_targets(vantage.addr, &[name]);
    }
    let body = scrape(vantage.addr);
    assert_eq!(reloads(&body, "success"), 3.0);
    assert_eq!(reloads(&body, "failure"), 0.0);
    assert_eq!(
        value(&body, "vantage_config_last_reload_successful", &[]),
        Some(1.0)
    );
}

#[test]
fn a_config_linked_from_another_folder_is_watched_where_it_lives() {
    let peer = quiet_peer();
    let dir = TempDir::new("linked");
    for folder in ["etc", "one", "two"] {
        std::fs::create_dir(dir.0.join(folder)).unwrap();
    }
    let real = |folder: &str| dir.0.join(folder).join("real.yml");
    std::fs::write(real("one"), config(&tcp_target("a", peer, ""))).unwrap();
    let link = dir.0.join("etc").join("exporter.yml");
    std::os::unix::fs::symlink(real("one"), &link).unwrap();
    let vantage = Vantage::start(&link, &[]);
    wait_for_targets(vantage.addr, &["a"]);

    // An edit where the file lives, outside the folder of the path vantage was given.
    std::fs::write(real("one"), config(&tcp_target("b", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["b"]);
    // The link moves to another folder (an event in `etc`); edits are then seen there.
    std::fs::write(real("two"), config(&tcp_target("c", peer, ""))).unwrap();
    let tmp = dir.0.join("etc").join("exporter.yml.new");
    std::os::unix::fs::symlink(real("two"), &tmp).unwrap();
    std::fs::rename(&tmp, &link).unwrap();
    wait_for_targets(vantage.addr, &["c"]);
    std::fs::write(real("two"), config(&tcp_target("d", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["d"]);

    // The file goes away for a while (a failed reload), then comes back: still watched.
    std::fs::remove_file(real("two")).unwrap();
    wait_for(Duration::from_secs(10), "the failed reload", || {
        reloads(&scrape(vantage.addr), "failure") == 1.0
    });
    std::fs::write(real("two"), config(&tcp_target("e", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["e"]);
    std::fs::write(real("two"), config(&tcp_target("f", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["f"]);

    // The folder the file lives in is replaced by a new one: the new one is watched.
    std::fs::rename(dir.0.join("two"), dir.0.join("two.old")).unwrap();
    std::fs::create_dir(dir.0.join("two")).unwrap();
    std::fs::write(real("two"), config(&tcp_target("g", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["g"]);
    std::fs::write(real("two"), config(&tcp_target("h", peer, ""))).unwrap();
    wait_for_targets(vantage.addr, &["h"]);
}

#[test]
fn writes_in_place_and_by_rename_are_applied_and_unchanged_content_is_not() {
    let peer = quiet_peer();
    let dir = TempDir::new("file-writes");
    let text = config(&tcp_target("a", peer, ""));
    let path = dir.write("exporter.yml", &text);
    let vantage = Vantage::start(&path, &["--log.level=debug"]);
    wait_for_targets(vantage.addr, &["a"]);
    let looks = || vantage.log().matches("config files unchanged").count();
    wait_for(Duration::from_secs(5), "the check at start", || {
        looks() == 1
    });

    // Other files of the folder changing are not even looked at (a log written there, say).
    for i in 0..5 {
        dir.write("unrelated.log", &format!("line {i}\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(looks(), 1, "{}", vantage.log());

    // An editor's save: a new file renamed over the old one.
    dir.write("exporter.yml.swp", &config(&tcp_target("b", peer, "")));
    std::fs::rename(dir.0.join("exporter.yml.swp"), &path).unwrap();
    wait_for_targets(vantage.addr, &["b"]);
    // A write into the file itself.
    let text = config(&tcp_target("c", peer, ""));
    std::fs::write(&path, &text).unwrap();
    wait_for_targets(vantage.addr, &["c"]);
    // Counted once the new targets are running, which a busy machine may let a scrape see first.
    wait_for(Duration::from_secs(5), "two reloads counted", || {
        reloads(&scrape(vantage.addr), "success") == 2.0
    });

    // The same content again is looked at, and not reloaded.
    std::fs::write(&path, &text).unwrap();
    wait_for(Duration::from_secs(5), "a look at the rewrite", || {
        looks() == 2
    });
    assert_eq!(reloads(&scrape(vantage.addr), "success"), 2.0);
    assert_eq!(vantage.log().matches("config reloaded").count(), 2);
}

#[test]
fn a_file_written_slowly_in_place_is_read_once_it_is_complete() {
    let peer = quiet_peer();
    let dir = TempDir::new("slow-write");
    let path = dir.write("exporter.yml", &config(&tcp_target("a", peer, "")));
    let vantage = Vantage::start(&path, &[]);
    wait_for_targets(vantage.addr, &["a"]);

    // Truncated, then written a line at a time with pauses longer than the quiet period, as a
    // slow `cat > exporter.yml` would: every prefix that ends a line is a valid config.
    let names: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    let whole = config(
        &names
            .iter()
            .map(|n| tcp_target(n, peer, ""))
            .collect::<String>(),
    );
    let mut file = std::fs::File::create(&path).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    for line in whole.split_inclusive('\n') {
        file.write_all(line.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(350));
    }
    drop(file);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_for_targets(vantage.addr, &all);
    // The reload starts the new targets before it logs, so on a busy machine their series can
    // be scraped before the line is written.
    wait_for(Duration::from_secs(5), "the reload's log line", || {
        vantage.log().contains("config reloaded")
    });
    let log = vantage.log();
    assert_eq!(
        log.matches("config reloaded").count(),
        1,
        "one reload, of the whole file:\n{log}"
    );
    assert!(log.contains("targets=6"), "{log}");
    assert_eq!(reloads(&scrape(vantage.addr), "failure"), 0.0);
}

/// An HTTP server that answers 200 and records each request's Authorization header.
fn recording_peer() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let Some(head) = read_request_head(&mut stream) else {
                continue;
            };
            let head = String::from_utf8_lossy(&head).to_string();
            let auth = head
                .lines()
                .find_map(|l| l.strip_prefix("authorization: "))
                .unwrap_or_default()
                .to_string();
            record.lock().unwrap().push(auth);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    (port, seen)
}

/// Writes `text` into `path` and keeps the file open: while a writer holds it, the file watch
/// waits, so only an explicit trigger can apply the change.
fn write_and_hold(path: &Path, text: &str) -> std::fs::File {
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

#[test]
fn a_rotated_token_is_picked_up_by_the_watch_and_by_sighup_and_post() {
    let (port, seen) = recording_peer();
    let dir = TempDir::new("token");
    // The token lives in a Secret-style folder of its own: secret/token -> ..data/token.
    let secret = dir.0.join("secret");
    let version = |n: usize, token: &str| {
        let folder = secret.join(format!("..v{n}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("token"), format!("{token}\n")).unwrap();
        swap_symlink(&format!("..v{n}"), &secret.join("..data"));
    };
    version(1, "Bearer one");
    std::os::unix::fs::symlink("..data/token", secret.join("token")).unwrap();
    let path = dir.write(
        "exporter.yml",
        &config(&format!(
            "  - {{name: api, type: http, url: 'http://127.0.0.1:{port}/', http: {{headers: {{Authorization: {{file: secret/token}}}}}}}}\n"
        )),
    );
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    let sent = |token: &str| seen.lock().unwrap().iter().any(|a| a == token);
    wait_for(
        Duration::from_secs(10),
        "a request with the first token",
        || sent("Bearer one"),
    );

    // Kubernetes rotates the Secret: the file watch sees it, exporter.yml is unchanged.
    version(2, "Bearer two");
    wait_for(Duration::from_secs(10), "the rotated token", || {
        sent("Bearer two")
    });
    assert!(vantage.log().contains("changed=1"), "{}", vantage.log());

    // While a writer holds the file the watch waits (a run each second would have sent the new
    // token by now); SIGHUP does not.
    let held = write_and_hold(&secret.join("..v2/token"), "Bearer three\n");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!sent("Bearer three"), "read while a writer held the file");
    vantage.signal("HUP");
    wait_for(Duration::from_secs(5), "the token after SIGHUP", || {
        sent("Bearer three")
    });
    assert!(
        vantage
            .log()
            .lines()
            .any(|l| l.contains("trigger=SIGHUP") && l.contains("changed=1")),
        "{}",
        vantage.log()
    );
    drop(held);

    let held = write_and_hold(&secret.join("..v2/token"), "Bearer four\n");
    let (status, body) = post_reload(vantage.addr);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        "config reloaded: 0 added, 1 changed, 0 removed, 0 unchanged\n"
    );
    wait_for(Duration::from_secs(5), "the token after POST", || {
        sent("Bearer four")
    });
    drop(held);
    let get = http_get(vantage.addr, "/-/reload", None).unwrap();
    assert_eq!((get.status, get.header("allow")), (405, Some("POST")));
}

#[test]
fn a_missing_token_file_fails_the_reload_and_its_return_recovers_by_itself() {
    let peer = quiet_peer();
    let dir = TempDir::new("token-gone");
    dir.write("token", "Bearer one\n");
    let path = dir.write(
        "exporter.yml",
        &config(&format!(
            "{}  - {{name: api, type: http, url: 'http://127.0.0.1:{peer}/', http: {{headers: {{Authorization: {{file: token}}}}}}}}\n",
            tcp_target("plain", peer, "")
        )),
    );
    let vantage = Vantage::start(&path, &[]);
    wait_for_targets(vantage.addr, &["api", "plain"]);
    std::fs::remove_file(dir.0.join("token")).unwrap();
    wait_for(Duration::from_secs(10), "the failed reload", || {
        reloads(&scrape(vantage.addr), "failure") == 1.0
    });
    assert!(vantage.log().contains("cannot read"), "{}", vantage.log());
    assert_eq!(probed(&scrape(vantage.addr)), ["api", "plain"]);
    dir.write("token", "Bearer two\n");
    wait_for(Duration::from_secs(10), "the recovery", || {
        let body = scrape(vantage.addr);
        value(&body, "vantage_config_last_reload_successful", &[]) == Some(1.0)
            && reloads(&body, "success") == 1.0
    });
}

#[test]
fn a_bad_file_keeps_the_old_targets_probing_until_it_is_fixed() {
    let peer = quiet_peer();
    let dir = TempDir::new("bad-file");
    let good = config(&tcp_target("a", peer, ""));
    let path = dir.write("exporter.yml", &good);
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    wait_for_targets(vantage.addr, &["a"]);

    // Line 4, column 35: the timeout of targets[1].
    let bad = format!(
        "{}  - {{name: b, type: tcp, timeout: soon, host: 127.0.0.1, port: {peer}}}\n",
        good
    );
    std::fs::write(&path, &bad).unwrap();
    wait_for(Duration::from_secs(10), "the failed reload", || {
        reloads(&scrape(vantage.addr), "failure") == 1.0
    });
    let body = scrape(vantage.addr);
    assert_eq!(
        value(&body, "vantage_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(reloads(&body, "success"), 0.0);
    let log = vantage.log();
    let file = path.display().to_string();
    assert!(
        log.contains(&format!("{file}:4:35: targets[1].timeout")),
        "the log names file, line, column and key:\n{log}"
    );
    assert!(log.contains("the previous config keeps running"), "{log}");

    // The old target goes on being probed.
    let runs = |body: &str| {
        value(
            body,
            "probe_runs_total",
            &[("name", "a"), ("result", "success")],
        )
    };
    let before = runs(&body).unwrap();
    wait_for(
        Duration::from_secs(10),
        "more runs of the old target",
        || runs(&scrape(vantage.addr)).unwrap() >= before + 2.0,
    );
    assert_eq!(probed(&scrape(vantage.addr)), ["a"]);

    let (status, text) = post_reload(vantage.addr);
    assert_eq!(status, 400);
    assert!(
        text.contains(&format!("{file}:4:35: targets[1].timeout")),
        "{text}"
    );

    std::fs::write(&path, bad.replace("soon", "300ms")).unwrap();
    wait_for_targets(vantage.addr, &["a", "b"]);
    let body = scrape(vantage.addr);
    assert_eq!(
        value(&body, "vantage_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(
        (reloads(&body, "success"), reloads(&body, "failure")),
        (1.0, 2.0)
    );
    assert!(
        runs(&body).unwrap() >= before + 2.0,
        "the unchanged target kept its counter"
    );

    // A file that disappears is a failed reload too; putting the same file back recovers.
    let fixed = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    wait_for(Duration::from_secs(10), "the failed reload", || {
        reloads(&scrape(vantage.addr), "failure") == 3.0
    });
    assert!(vantage.log().contains("cannot read the config file"));
    assert_eq!(probed(&scrape(vantage.addr)), ["a", "b"]);
    // Created empty first (as `touch` or a slow writer does): taken for a file being written,
    // not for a config without targets.
    std::fs::File::create(&path).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let body = scrape(vantage.addr);
    assert_eq!(probed(&body), ["a", "b"]);
    assert_eq!(reloads(&body, "success"), 1.0);
    let before_return = runs(&body).unwrap();
    std::fs::write(&path, fixed).unwrap();
    wait_for(Duration::from_secs(10), "the recovery", || {
        let body = scrape(vantage.addr);
        value(&body, "vantage_config_last_reload_successful", &[]) == Some(1.0)
            && reloads(&body, "success") == 2.0
    });
    assert!(
        runs(&scrape(vantage.addr)).unwrap() >= before_return,
        "the targets ran on, unchanged, through the failures"
    );
}

#[test]
fn a_config_folder_deleted_and_made_again_stays_watched() {
    let peer = quiet_peer();
    let dir = TempDir::new("folder-again");
    let folder = dir.0.join("cfg");
    std::fs::create_dir(&folder).unwrap();
    let path = folder.join("exporter.yml");
    std::fs::write(&path, config(&tcp_target("a", peer, ""))).unwrap();
    let vantage = Vantage::start(&path, &[]);
    wait_for_targets(vantage.addr, &["a"]);
    for (round, name) in ["b", "c"].iter().enumerate() {
        // Deleted and made again at once: the new folder and file may get the old inode numbers.
        std::fs::remove_dir_all(&folder).unwrap();
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(&path, config(&tcp_target(name, peer, ""))).unwrap();
        wait_for_targets(vantage.addr, &[name]);
        // And an edit afterwards is seen by the watch, not only by the check every minute.
        let edited = format!("{name}{round}");
        std::fs::write(&path, config(&tcp_target(&edited, peer, ""))).unwrap();
        wait_for_targets(vantage.addr, &[edited.as_str()]);
    }
}

#[test]
fn unchanged_targets_keep_their_counters_across_ten_reloads_and_removed_ones_vanish() {
    let peer = quiet_peer();
    let dir = TempDir::new("ten-reloads");
    let with = |round: usize| {
        let mut targets = tcp_target("keep", peer, "");
        // Changes setting every round, keeping its labels; `gone` is there every other round.
        targets.push_str(&tcp_target(
            "flip",
            peer,
            &format!(", timeout: {}ms", 300 + round),
        ));
        if round.is_multiple_of(2) {
            targets.push_str(&tcp_target("gone", peer, ""));
        }
        config(&targets)
    };
    let path = dir.write("exporter.yml", &with(0));
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    wait_for_targets(vantage.addr, &["flip", "gone", "keep"]);
    let runs = |body: &str, name: &str| {
        value(
            body,
            "probe_runs_total",
            &[("name", name), ("result", "success")],
        )
    };
    wait_for(Duration::from_secs(10), "a first run of keep", || {
        runs(&scrape(vantage.addr), "keep").is_some_and(|n| n >= 1.0)
    });
    let mut last = runs(&scrape(vantage.addr), "keep").unwrap();
    let first = last;
    for round in 1..=10 {
        std::fs::write(&path, with(round)).unwrap();
        let (status, text) = post_reload(vantage.addr);
        assert_eq!(status, 200, "{text}");
        // Whether the POST or the file watch applied this round's change, `keep` was never
        // among the changed targets.
        let unchanged: usize = text
            .trim_end()
            .rsplit(", ")
            .next()
            .and_then(|u| u.strip_suffix(" unchanged"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(unchanged >= 1, "round {round}: {text}");
        // POST answers once the reload is applied: this scrape sees the new target set.
        let body = scrape(vantage.addr);
        let gone = runs(&body, "gone");
        assert_eq!(
            gone.is_some(),
            round.is_multiple_of(2),
            "round {round}: {gone:?}"
        );
        assert!(
            !body.contains("name=\"gone\"") || round.is_multiple_of(2),
            "every series of a removed target is gone"
        );
        let keep = runs(&body, "keep").expect("the unchanged target has its series");
        assert!(keep >= last, "round {round}: {keep} after {last}");
        assert!(value(&body, "probe_success", &[("name", "keep")]).is_some());
        last = keep;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(last >= first + 2.0, "runs went on: {first} -> {last}");
    // Ten POSTs, and the file watch may have come first for some of the rounds.
    let successes = reloads(&scrape(vantage.addr), "success");
    assert!((10.0..=20.0).contains(&successes), "{successes}");
}

/// `count` targets named from `first`, every fourth with a setting that the other config lacks.
fn many(first: usize, count: usize, port: u16, variant: bool) -> String {
    let mut targets = String::new();
    for i in first..first + count {
        let timeout = if variant && i % 4 == 0 {
            "600ms"
        } else {
            "500ms"
        };
        targets.push_str(&tcp_target(
            &format!("t{i}"),
            port,
            &format!(", timeout: {timeout}"),
        ));
    }
    format!("defaults: {{interval: 5s, timeout: 1s}}\ntargets:\n{targets}")
}

/// A file and its two alternating configs of 1,000 targets: half the names shared (a quarter of
/// those with a changed setting), half different.
fn alternating(dir: &TempDir, port: u16) -> (PathBuf, [String; 2]) {
    let a = many(0, 1000, port, false);
    let b = many(500, 1000, port, true);
    (dir.write("exporter.yml", &a), [a, b])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reloads_of_a_thousand_targets_leave_a_task_only_for_each_run_in_flight() {
    let port = quiet_peer();
    let dir = TempDir::new("reload-tasks");
    let (path, configs) = alternating(&dir, port);
    let options = LoadOptions::default();
    let initial = reload::load(&path, &options).unwrap();
    let shared = Shared {
        store: Arc::new(Store::default()),
        limiter: Arc::new(Limiter::new(initial.config.max_concurrent_probes)),
        telemetry: Telemetry::new(),
    };
    let status = Arc::new(ReloadStatus::new(std::time::SystemTime::now()));
    let mut reloader = Reloader::start(
        &path,
        options,
        initial,
        Arc::new(Probes),
        shared.clone(),
        Arc::clone(&status),
        vantage::reload::Fetched::default(),
    )
    .await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // Idle targets have no task: the scheduler's driver has one, and each run while it runs
    // (the limit is far above what 1,000 targets every 5 s keep busy, so none waits for it).
    let in_flight = {
        let gauge = shared.telemetry.in_flight.clone();
        move || usize::try_from(gauge.get()).unwrap()
    };
    // Runs start and end on the other worker between the two reads, and a stopped task has
    // ended when the reload returns but may still be released for a moment: allow a second
    // for the two counts to agree, and no more. A task left behind by a stopped target and no
    // longer running would never agree.
    let agree = || async {
        let until = Instant::now() + Duration::from_secs(1);
        loop {
            let (tasks, runs) = (alive(), in_flight());
            if tasks == 1 + runs || Instant::now() >= until {
                return (tasks, 1 + runs);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let (tasks, expected) = agree().await;
    assert_eq!(tasks, expected);
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 1..=100 {
        std::fs::write(&path, &configs[round % 2]).unwrap();
        let reloaded = reloader.reload(Trigger::Api).await.unwrap();
        let Reloaded::Applied(changes) = reloaded else {
            panic!("round {round}: {reloaded:?}")
        };
        assert_eq!(
            (
                changes.added,
                changes.changed,
                changes.removed,
                changes.unchanged
            ),
            (500, 125, 500, 375),
            "round {round}"
        );
        let (tasks, expected) = agree().await;
        assert_eq!(
            tasks, expected,
            "round {round}: the driver and the runs in flight"
        );
        assert!(
            tasks < 100,
            "round {round}: {tasks} tasks for 1,000 targets"
        );
        assert_eq!(shared.store.snapshot().len(), 1000);
        assert!(Instant::now() < deadline, "100 reloads took over 2 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status.get().successes, 100);
    // Every target of the last config runs once or twice in 6 s at its 5 s interval: none
    // fell out of the queue (unchanged ones included, whose latest run predates the reloads).
    let runs = |snapshot: &[Arc<Entry>]| -> HashMap<String, u64> {
        snapshot
            .iter()
            .map(|e| (e.target.name.clone(), e.successes + e.failures))
            .collect()
    };
    let before = runs(&shared.store.snapshot());
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = runs(&shared.store.snapshot());
    assert_eq!(after.len(), 1000);
    let wrong: Vec<(&String, u64)> = after
        .iter()
        .map(|(name, n)| (name, n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, ran)| !(1..=2).contains(ran))
        .collect();
    assert!(wrong.is_empty(), "runs in 6 s, not 1 or 2: {wrong:?}");
    reloader.stop().await;
    let until = Instant::now() + Duration::from_secs(1);
    while alive() != 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(alive(), 0, "the driver and every run ended");
    assert_eq!(shared.telemetry.in_flight.get(), 0);
}

/// Resident memory and open file descriptors of a process.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    (kib * 1024, fds)
}

#[test]
fn a_hundred_reloads_of_a_thousand_targets_while_probing_leak_no_memory_or_sockets() {
    let port = quiet_peer();
    let dir = TempDir::new("reload-load");
    let (path, configs) = alternating(&dir, port);
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    let pid = vantage.child.id();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut warm = None;
    for round in 1..=100 {
        std::fs::write(&path, &configs[round % 2]).unwrap();
        let (status, text) = post_reload(vantage.addr);
        assert_eq!(status, 200, "round {round}: {text}");
        let body = scrape(vantage.addr);
        assert_eq!(
            value(&body, "vantage_targets", &[("probe", "tcp")]),
            Some(1000.0),
            "round {round}"
        );
        if round == 10 {
            warm = Some(usage(pid));
        }
        assert!(Instant::now() < deadline, "100 reloads took over 4 minutes");
    }
    let (warm_rss, warm_fds) = warm.unwrap();
    let (rss, fds) = usage(pid);
    eprintln!("after 10 reloads: {warm_rss} B, {warm_fds} fds; after 100: {rss} B, {fds} fds");
    // Runs in flight hold a socket each, so the count moves a little with the moment.
    assert!(fds <= warm_fds + 20, "{warm_fds} fds -> {fds}");
    assert!(
        rss <= warm_rss + warm_rss / 4,
        "memory grew from {warm_rss} to {rss} bytes"
    );
    assert!(
        http_get(vantage.addr, "/-/healthy", None).is_some_and(|r| r.status == 200),
        "vantage still serves"
    );
    assert!(!vantage.log().contains("panicked"), "{}", vantage.log());
}

#[test]
fn location_labels_and_the_concurrency_limit_change_for_every_series_at_once() {
    let peer = quiet_peer();
    let dir = TempDir::new("reload-labels");
    let with = |location: &str, team: &str, limit: usize| {
        format!(
            "location: {location}\nlabels: {{team: {team}}}\nmax_concurrent_probes: {limit}\n{}",
            config(&format!(
                "{}{}",
                tcp_target("a", peer, ""),
                tcp_target("b", peer, "")
            ))
        )
    };
    let path = dir.write("exporter.yml", &with("lab-1", "red", 7));
    let vantage = Vantage::start(&path, &["--web.enable-lifecycle"]);
    wait_for(Duration::from_secs(10), "runs of both targets", || {
        let body = scrape(vantage.addr);
        ["a", "b"]
            .iter()
            .all(|n| value(&body, "probe_success", &[("name", n)]).is_some())
    });
    assert_eq!(
        value(&scrape(vantage.addr), "vantage_max_concurrent_probes", &[]),
        Some(7.0)
    );

    std::fs::write(&path, with("lab-2", "blue", 3)).unwrap();
    let (status, text) = post_reload(vantage.addr);
    // The file watch may have applied the change a moment before; either way it is applied
    // when POST answers.
    assert_eq!(status, 200, "{text}");
    let body = scrape(vantage.addr);
    let probe_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("probe_")).collect();
    assert!(!probe_lines.is_empty());
    for line in &probe_lines {
        assert!(
            line.contains("location=\"lab-2\"") && line.contains("team=\"blue\""),
            "a series with old labels survived the reload: {line}"
        );
    }
    assert_eq!(
        value(&body, "vantage_max_concurrent_probes", &[]),
        Some(3.0)
    );
    let page = http_get(vantage.addr, "/", None).unwrap().body;
    assert!(page.contains("lab-2") && !page.contains("lab-1"));
}

#[test]
fn a_missing_config_at_start_up_exits_1_naming_the_file() {
    let dir = TempDir::new("missing-config");
    let path = dir.0.join("exporter.yml");
    let out = std::process::Command::new(crate::support::vantage_bin())
        .arg(format!("--config.file={}", path.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("{}: cannot read the config file", path.display())),
        "{log}"
    );
}
