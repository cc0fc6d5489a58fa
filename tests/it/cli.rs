//! The command line: `--version`, `check-config`, `probe`, and refusal of bad input.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};

use crate::support::{TempDir, closed_port, thread_peer, vantage_bin};

fn vantage(args: &[&str]) -> Output {
    Command::new(vantage_bin()).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Greets like SMTP and answers QUIT with 221.
fn smtp_like(mut stream: TcpStream) {
    let _ = stream.write_all(b"220 test ESMTP\r\n");
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 || (buf[..n].starts_with(b"QUIT") && stream.write_all(b"221 bye\r\n").is_err()) {
            break;
        }
    }
}

#[test]
fn version_names_the_release_and_revision() {
    let out = vantage(&["--version"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with("vantage 0.1.0 (revision "), "{text}");
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/exporter.yml");
    let out = vantage(&["check-config", shipped]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(": OK") && text.contains("vantage-listener (tcp 127.0.0.1:9875)"),
        "{text}"
    );
}

#[test]
fn check_config_reports_every_error_with_file_line_column_and_key() {
    let dir = TempDir::new("check");
    let path = dir.write(
        "bad.yml",
        "targets:\n  - name: a\n    type: tcp\n    host: h\n    port: 70000\n  - name: b\n    type: icmp\n    host: x\n    icmp: {count: 0}\n",
    );
    let out = vantage(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    let file = path.display();
    assert!(
        text.contains(&format!(
            "{file}:5:11: targets[0].port: port 70000 is out of range 1-65535"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{file}:9:19: targets[1].icmp.count: must be from 1 to 100, not 0"
        )),
        "{text}"
    );
}

/// Issue 23, item 6: what was accepted although almost certainly a mistake, each refused at
/// its place by the real binary.
#[test]
fn issue_23_check_config_refuses_almost_certain_mistakes_where_they_are_written() {
    let dir = TempDir::new("mistakes");
    let method = "X".repeat(100_000);
    let path = dir.write(
        "mistakes.yml",
        &format!(
            "labels: {{job: probes}}\n\
             targets:\n\
             \x20 - {{name: a, type: tcp, host: 0.0.0.0, port: 80, interval_on_failure: 2ms}}\n\
             \x20 - {{name: d, type: dns, host: example.com, dns: {{expect_addresses: ['::1']}}}}\n\
             \x20 - {{name: \"x\\u202Ey\", type: icmp, host: 224.0.0.1}}\n\
             \x20 - {{name: w, type: http, url: http://127.0.0.1/, http: {{method: {method}}}}}\n"
        ),
    );
    let out = vantage(&["check-config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let file = path.display();
    let lines: Vec<String> = stderr(&out).lines().map(str::to_string).collect();
    let expected = [
        format!(
            "{file}:1:9: labels.job: \"job\" is a label Prometheus sets on every series it \
             scrapes (naming vantage itself): this one would be stored as exported_job; choose \
             another name"
        ),
        format!(
            "{file}:3:32: targets[0].host: 0.0.0.0 is the unspecified address, which names no \
             host: a probe checks one host, so give the address of one"
        ),
        format!(
            "{file}:3:72: targets[0].interval_on_failure: must be at least 1s, not 2ms (`ms` is \
             milliseconds; minutes are `m`)"
        ),
        format!(
            "{file}:4:70: targets[1].dns.expect_addresses[0]: ::1 is an IPv6 address, which A \
             records never hold: ask for AAAA records in a target of its own"
        ),
        format!(
            "{file}:5:12: targets[2].name: the name contains U+202E, an invisible character that \
             changes how text displays"
        ),
        format!(
            "{file}:5:42: targets[2].host: 224.0.0.1 is a multicast address: a probe checks one \
             host, so give the address of one"
        ),
        format!(
            "{file}:6:66: targets[3].http.method: method is 100000 characters long; no method is \
             longer than 32"
        ),
    ];
    assert_eq!(lines, expected);
}

#[test]
fn check_config_uses_the_config_flag_and_location_from_the_environment() {
    let dir = TempDir::new("checkloc");
    let path = dir.write(
        "x.yml",
        "location: a\ntargets:\n  - {name: t, type: tcp, host: h, port: 1, locations: [b]}\n",
    );
    let flag = format!("--config.file={}", path.display());
    let here = vantage(&["check-config", &flag]);
    assert!(
        stdout(&here).contains("not run at this location: t"),
        "{}",
        stdout(&here)
    );
    let out = Command::new(vantage_bin())
        .args(["check-config", &flag])
        .env("VANTAGE_LOCATION", "b")
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(
        text.contains("location: b") && text.contains("targets: 1"),
        "{text}"
    );
}

#[test]
fn a_flag_given_twice_takes_its_last_value() {
    // What lets the Helm chart's extraArgs override the flags it always passes.
    let dir = TempDir::new("twice");
    let path = dir.write("x.yml", "location: a\ntargets: []\n");
    let out = vantage(&[
        "--config.file=missing.yml",
        "--location=first",
        "check-config",
        &format!("--config.file={}", path.display()),
        "--location=last",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("location: last"), "{text}");
}

#[test]
fn check_config_of_a_missing_file_fails_clearly() {
    let out = vantage(&["check-config", "/nonexistent/exporter.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("/nonexistent/exporter.yml: cannot read the config file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn probe_reports_success_with_phases_and_exits_0() {
    let address = format!(
        "127.0.0.1:{}",
        thread_peer(|mut s| {
            let _ = s.read(&mut [0u8; 16]);
        })
    );
    let out = vantage(&["probe", &address]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains(&format!("target    tcp {address}")), "{text}");
    assert!(text.contains("connect   "), "{text}");
    assert!(
        text.contains("close     FIN sent, the peer closed too"),
        "{text}"
    );
    assert!(text.contains("result    success in"), "{text}");
}

#[test]
fn probe_reports_the_reason_and_exits_1_on_failure() {
    let address = format!("127.0.0.1:{}", closed_port());
    let out = vantage(&["probe", &address]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("result    FAILURE connection_refused"),
        "{text}"
    );
    assert!(text.contains("detail    connecting to"), "{text}");
}

#[test]
fn probe_runs_a_named_check_from_the_config_with_its_dialogue() {
    let port = thread_peer(smtp_like);
    let dir = TempDir::new("probename");
    let path = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - name: mail\n    type: tcp\n    host: 127.0.0.1\n    port: {port}\n    locations: [elsewhere]\n    tcp:\n      steps:\n        - expect: \"^220 \"\n        - send: \"QUIT\\r\\n\"\n        - expect: \"^250\"\n"
        ),
    );
    let flag = format!("--config.file={}", path.display());
    let out = vantage(&["probe", &flag, "--name=mail", "--timeout=300ms"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the third step expects 250 but gets 221"
    );
    let text = stdout(&out);
    assert!(text.contains("step 0    expect /^220 / matched"), "{text}");
    assert!(
        text.contains("step 1    sent 6 bytes \"QUIT\\r\\n\""),
        "{text}"
    );
    assert!(text.contains("result    FAILURE expect_mismatch"), "{text}");
    assert!(text.contains("step      2: expect /^250/"), "{text}");
    assert!(
        text.contains("221 bye"),
        "the report quotes what came back: {text}"
    );

    // The same check pointed at another address, where nothing listens.
    let elsewhere = format!("127.0.0.1:{}", closed_port());
    let out = vantage(&["probe", &flag, "--name=mail", &elsewhere]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("target    tcp {elsewhere} (mail)")),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("connection_refused"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn probe_refuses_what_it_cannot_run_with_exit_2() {
    let port_given = vantage(&["probe", "127.0.0.1:80", "--type=icmp"]);
    assert_eq!(port_given.status.code(), Some(2));
    assert!(
        stderr(&port_given).contains("includes a port"),
        "{}",
        stderr(&port_given)
    );
    for (args, says) in [
        (["127.0.0.1:80", "--type=http"], "--type=http takes a URL"),
        (
            ["http://127.0.0.1/", "--type=tls"],
            "--type=tls takes HOST:PORT",
        ),
        (["ftp://127.0.0.1/", "--type=http"], "not http or https"),
    ] {
        let out = vantage(&[&["probe"][..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }

    let no_port = vantage(&["probe", "127.0.0.1"]);
    assert_eq!(no_port.status.code(), Some(2));
    assert!(
        stderr(&no_port).contains("HOST:PORT"),
        "{}",
        stderr(&no_port)
    );

    let both = vantage(&["probe", "--name=x", "--type=tls"]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr(&both).contains("--type is for HOST:PORT"),
        "{}",
        stderr(&both)
    );

    let unknown = vantage(&["probe", "--config.file=/nonexistent.yml", "--name=x"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("cannot read the config file"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn unknown_flags_and_bad_values_are_errors() {
    let unknown = vantage(&["--config.fiel=x.yml"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("--config.fiel"),
        "{}",
        stderr(&unknown)
    );
    let bad_level = vantage(&["--log.level=loud", "check-config"]);
    assert_eq!(bad_level.status.code(), Some(2));
    let bad_timeout = vantage(&["probe", "127.0.0.1:1", "--timeout=5"]);
    assert_eq!(bad_timeout.status.code(), Some(2));
    assert!(
        stderr(&bad_timeout).contains("\"5s\""),
        "{}",
        stderr(&bad_timeout)
    );
}

/// Answers one HTTP/1.1 request with a 301 to `/here`, and `/here` with 200, then waits for
/// the client to close.
fn tiny_web(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};
    let Some(request) = crate::support::read_request_head(&mut stream) else {
        return;
    };
    let mut buf = [0u8; 1024];
    let answer: &[u8] = if request.starts_with(b"GET /here ") {
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
    } else {
        b"HTTP/1.1 301 Moved\r\nLocation: /here\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    };
    let _ = stream.write_all(answer);
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

#[test]
fn probe_of_a_url_prints_every_request_with_its_phases() {
    let port = crate::support::thread_peer(tiny_web);
    let url = format!("http://127.0.0.1:{port}/start");
    let out = vantage(&["probe", &url]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for expected in [
        format!("target    http {url} (adhoc)"),
        format!("request 0 GET {url}"),
        "answer    HTTP/1.1 301, redirect to /here".to_string(),
        format!("request 1 GET http://127.0.0.1:{port}/here"),
        "answer    HTTP/1.1 200".to_string(),
        "body      2 bytes".to_string(),
        "redirects 1".to_string(),
        "close     FIN sent, the peer closed too".to_string(),
        "result    success in".to_string(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing in\n{text}");
    }
    assert_eq!(text.matches("ttfb      ").count(), 2, "{text}");
    assert_eq!(text.matches("connect   ").count(), 2, "{text}");
}

#[test]
fn probe_by_name_points_an_http_check_at_another_url() {
    let port = crate::support::thread_peer(tiny_web);
    let dir = TempDir::new("cli-http-name");
    let path = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - name: web\n    type: http\n    url: http://127.0.0.1:{}/\n    http: {{body_regex: ok, follow_redirects: false}}\n",
            crate::support::closed_port()
        ),
    );
    let flag = format!("--config.file={}", path.display());
    let url = format!("http://127.0.0.1:{port}/here");
    let out = vantage(&["probe", &flag, "--name=web", &url]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains(&format!("target    http {url} (web)")),
        "{text}"
    );

    let moved = vantage(&[
        "probe",
        &flag,
        "--name=web",
        &format!("http://127.0.0.1:{port}/"),
    ]);
    assert_eq!(
        moved.status.code(),
        Some(1),
        "redirects are not followed, as configured"
    );
    assert!(
        stdout(&moved).contains("FAILURE http_status"),
        "{}",
        stdout(&moved)
    );

    let not_a_url = vantage(&["probe", &flag, "--name=web", "127.0.0.1:80"]);
    assert_eq!(not_a_url.status.code(), Some(2));
    assert!(
        stderr(&not_a_url).contains("not a URL"),
        "{}",
        stderr(&not_a_url)
    );

    // Pointed elsewhere, a check is held to what the config holds it to: an address that
    // names no host (Linux would connect 0.0.0.0 to this machine) is refused before a run.
    for address in ["http://0.0.0.0:80/", "http://[ff02::1]/"] {
        let nowhere = vantage(&["probe", &flag, "--name=web", address]);
        assert_eq!(nowhere.status.code(), Some(2), "{address}");
        assert!(
            stderr(&nowhere).contains("a probe checks one host"),
            "{address}: {}",
            stderr(&nowhere)
        );
    }
    let adhoc = vantage(&["probe", "0.0.0.0:80"]);
    assert_eq!(adhoc.status.code(), Some(2));
    assert!(
        stderr(&adhoc).contains("the unspecified address"),
        "{}",
        stderr(&adhoc)
    );
}
