//! The files a config names are not trusted (issue 23, item 2): `/dev/zero` or a FIFO named as
//! `ca_file` or a header `file:` once killed or froze the exporter that a reload was meant to
//! keep running, and `check-config` with it. Here each is refused with a located error, the
//! old config keeps running, memory stays flat, and SIGTERM still ends vantage at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::pki::Ca;
use crate::support::{TempDir, Vantage, http_get, http_request, quiet_peer, vantage_bin, wait_for};

fn tcp(name: &str, port: u16, extra: &str) -> String {
    format!("  - {{name: {name}, type: tcp, host: 127.0.0.1, port: {port}{extra}}}\n")
}

fn http_with_header_file(name: &str, port: u16, file: &str) -> String {
    format!(
        "  - {{name: {name}, type: http, url: 'http://127.0.0.1:{port}/', http: {{headers: {{Authorization: {{file: {file}}}}}}}}}\n"
    )
}

fn config(targets: &str) -> String {
    format!("defaults: {{interval: 1s, timeout: 500ms}}\ntargets:\n{targets}")
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// `POST /-/reload`, which must answer within `limit`.
fn post_reload(addr: SocketAddr, limit: Duration) -> (u16, String) {
    let started = Instant::now();
    let r = http_request(addr, "POST", "/-/reload", None).expect("an answer to POST /-/reload");
    assert!(
        started.elapsed() < limit,
        "POST /-/reload took {:?}",
        started.elapsed()
    );
    (r.status, r.body)
}

/// Fails unless `text` has the error `message` located at line `line` (any column) of `file`.
fn located(text: &str, file: &Path, line: u32, message: &str) {
    let at = format!("{}:{line}:", file.display());
    let found = text.lines().any(|l| {
        l.strip_prefix(&at)
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(column, rest)| column.parse::<u32>().is_ok() && rest == message)
    });
    assert!(found, "no {at}COLUMN: {message} in\n{text}");
}

/// The runs of target `name` so far.
fn runs(vantage: &Vantage, name: &str) -> f64 {
    let body = http_get(vantage.addr, "/metrics", None).unwrap().body;
    let prefix = format!("probe_runs_total{{name=\"{name}\"");
    body.lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn still_probed(vantage: &Vantage, name: &str) {
    let before = runs(vantage, name);
    wait_for(
        Duration::from_secs(10),
        &format!("{name} to run again"),
        || runs(vantage, name) > before,
    );
}

/// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(vantage: &Vantage, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", vantage.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
}

/// vantage probing one target, `old`, from a config in a folder of its own; under a 4 GiB
/// address-space limit, so that a regression that reads `/dev/zero` whole fails the test
/// instead of exhausting the machine.
fn running(tag: &str) -> (u16, TempDir, PathBuf, Vantage) {
    let peer = quiet_peer();
    let dir = TempDir::new(tag);
    let path = dir.write("exporter.yml", &config(&tcp("old", peer, "")));
    let mut command = Command::new("sh");
    command.args([
        "-c",
        "ulimit -v 4194304 && exec \"$0\" \"$@\"",
        vantage_bin(),
    ]);
    let vantage = Vantage::start_as(command, &path, &["--web.enable-lifecycle"]);
    still_probed(&vantage, "old");
    (peer, dir, path, vantage)
}

#[test]
fn dev_zero_named_in_a_reload_is_refused_and_memory_stays_flat() {
    let (peer, _dir, path, vantage) = running("dev-zero");
    let peak_before = memory_kib(&vantage, "VmHWM");

    let bad = config(&format!(
        "{}{}",
        tcp("ca", peer, ", tls: {ca_file: /dev/zero}"),
        http_with_header_file("header", peer, "/dev/zero")
    ));
    std::fs::write(&path, bad).unwrap();
    let (status, body) = post_reload(vantage.addr, Duration::from_secs(10));
    assert_eq!(status, 400, "{body}");
    let refused = "cannot read /dev/zero: it is a character device, not a regular file";
    located(
        &body,
        &path,
        3,
        &format!("targets[0].tls.ca_file: {refused}"),
    );
    let header = "targets[1].http.headers.Authorization";
    located(&body, &path, 4, &format!("{header}: {refused}"));
    // The file event saw the same file: still the old config, probing as before.
    still_probed(&vantage, "old");
    assert_eq!(runs(&vantage, "ca"), 0.0);
    let peak_after = memory_kib(&vantage, "VmHWM");
    assert!(
        peak_after < peak_before + 64 * 1024,
        "peak resident memory grew from {peak_before} KiB to {peak_after} KiB"
    );
    let (exit, _) = vantage.stop("TERM");
    assert!(exit.success());
}

#[test]
fn a_fifo_named_in_a_reload_is_refused_at_once_and_a_fixed_file_reloads() {
    let (peer, dir, path, vantage) = running("fifo");

    mkfifo(&dir.0.join("ca.pem"));
    mkfifo(&dir.0.join("token"));
    let bad = config(&format!(
        "{}{}",
        tcp("new", peer, ", tls: {ca_file: ca.pem}"),
        http_with_header_file("header", peer, "token")
    ));
    std::fs::write(&path, &bad).unwrap();
    let (status, body) = post_reload(vantage.addr, Duration::from_secs(3));
    assert_eq!(status, 400, "{body}");
    let fifo = |name: &str| {
        format!(
            "cannot read {}: it is a FIFO (named pipe), not a regular file",
            dir.0.join(name).display()
        )
    };
    let ca_file = format!("targets[0].tls.ca_file: {}", fifo("ca.pem"));
    located(&body, &path, 3, &ca_file);
    let header = format!("targets[1].http.headers.Authorization: {}", fifo("token"));
    located(&body, &path, 4, &header);
    // SIGHUP and file events keep working; the old config keeps running.
    vantage.signal("HUP");
    still_probed(&vantage, "old");

    // The files fixed: the next reload applies.
    for name in ["ca.pem", "token"] {
        std::fs::remove_file(dir.0.join(name)).unwrap();
    }
    dir.write("ca.pem", &Ca::root("vantage test root").cert.pem());
    dir.write("token", "Bearer x\n");
    let (status, body) = post_reload(vantage.addr, Duration::from_secs(10));
    assert_eq!(status, 200, "{body}");
    still_probed(&vantage, "new");

    let started = Instant::now();
    let (exit, _) = vantage.stop("TERM");
    assert!(exit.success());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn sigterm_ends_vantage_at_once_even_during_a_long_reload() {
    let (peer, _dir, path, vantage) = running("long-reload");

    // Seconds of parsing in a debug build, ending in a mistake so that nothing is applied.
    let mut targets: String = (0..20_000)
        .map(|i| tcp(&format!("t{i}"), peer, ""))
        .collect();
    targets.push_str(&tcp("bad", peer, ", timeout: soon"));
    std::fs::write(&path, config(&targets)).unwrap();
    vantage.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (exit, log) = vantage.stop("TERM");
    assert!(exit.success(), "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "SIGTERM took {:?} to end vantage",
        started.elapsed()
    );
    // The reload was still under way when SIGTERM came: it never got to its verdict.
    assert!(
        !log.contains("targets[20000]"),
        "the reload had ended:\n{log}"
    );
}

/// `vantage check-config PATH`, which must end within 10 s.
fn check_config(path: &Path) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(vantage_bin())
        .args(["check-config", &path.display().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("check-config {} hung", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

#[test]
fn check_config_refuses_a_fifo_or_dev_zero_at_once() {
    let dir = TempDir::new("check-fifo");
    mkfifo(&dir.0.join("ca.pem"));
    let path = dir.write(
        "exporter.yml",
        &config(&format!(
            "{}{}",
            tcp("ca", 1, ", tls: {ca_file: ca.pem}"),
            http_with_header_file("header", 1, "/dev/zero")
        )),
    );
    let (out, took) = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(3), "check-config took {took:?}");
    let file = path.display();
    let fifo = dir.0.join("ca.pem");
    for message in [
        format!(
            "{file}:3:68: targets[0].tls.ca_file: cannot read {}: it is a FIFO (named pipe), not a regular file",
            fifo.display()
        ),
        format!(
            "{file}:4:92: targets[1].http.headers.Authorization: cannot read /dev/zero: it is a character device, not a regular file"
        ),
    ] {
        assert!(stderr.contains(&message), "{message} in {stderr}");
    }

    // The config itself a FIFO.
    let fifo = dir.0.join("fifo.yml");
    mkfifo(&fifo);
    let (out, took) = check_config(&fifo);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(3), "check-config took {took:?}");
    let message = format!(
        "{}: cannot read the config file: it is a FIFO (named pipe), not a regular file",
        fifo.display()
    );
    assert!(stderr.contains(&message), "{message} in {stderr}");
}
