//! The vantage binary as Prometheus sees it: endpoints, both exposition formats (the classic one
//! checked by the real `promtool`), failure series, and a clean exit on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{
    TempDir, Vantage, closed_port, http_get, http_request, promtool_check, sample, thread_peer,
    wait_for,
};

/// Answers PING with +PONG and anything else with -ERR, like Redis.
fn redis_like(mut stream: TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = stream.read(&mut buf) {
        let reply: &[u8] = if buf[..n].starts_with(b"PING") {
            b"+PONG\r\n"
        } else {
            b"-ERR\r\n"
        };
        if n == 0 || stream.write_all(reply).is_err() {
            break;
        }
    }
}

fn redis_like_peer() -> u16 {
    thread_peer(redis_like)
}

fn config(dir: &TempDir, peer: u16) -> std::path::PathBuf {
    dir.write(
        "exporter.yml",
        &format!(
            "location: test-lab
labels: {{env: ci}}
defaults: {{interval: 1s, timeout: 500ms}}
targets:
  - {{name: redis-ok, type: tcp, host: 127.0.0.1, port: {peer}, tcp: {{send: \"PING\\r\\n\", expect: \"\\\\+PONG\"}}}}
  - {{name: redis-wrong, type: tcp, host: 127.0.0.1, port: {peer}, tcp: {{send: \"INFO\\r\\n\", expect: \"\\\\+PONG\"}}, labels: {{team: data}}}}
  - {{name: nothing-listens, type: tcp, host: 127.0.0.1, port: {closed}}}
  - {{name: elsewhere, type: tcp, host: 127.0.0.1, port: {peer}, locations: [other-lab]}}
",
            closed = closed_port()
        ),
    )
}

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

#[test]
fn metrics_in_both_formats_pass_promtool_and_carry_reasons() {
    crate::support::needs(&["tool:promtool"]);
    let dir = TempDir::new("exporter");
    let vantage = Vantage::start(&config(&dir, redis_like_peer()), &[]);

    wait_for(Duration::from_secs(15), "a run of every target", || {
        http_get(vantage.addr, "/metrics", None)
            .is_some_and(|r| r.body.matches("probe_success{").count() == 3)
    });
    let classic = http_get(vantage.addr, "/metrics", None).unwrap();
    assert_eq!(classic.status, 200);
    assert_eq!(
        classic.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = &classic.body;

    let base = |name: &str, target: &str| {
        format!(
            "name=\"{name}\",probe=\"tcp\",target=\"{target}\",location=\"test-lab\",env=\"ci\""
        )
    };
    let peer_target = body
        .lines()
        .find(|l| l.starts_with("probe_success{name=\"redis-ok\""))
        .and_then(|l| l.split("target=\"").nth(1))
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();
    assert!(
        body.contains(&format!(
            "probe_success{{{}}} 1",
            base("redis-ok", &peer_target)
        )),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "probe_failure_info{{{},team=\"data\",reason=\"expect_mismatch\",step=\"1\"}} 1",
            base("redis-wrong", &peer_target)
        )),
        "{body}"
    );
    assert!(body.contains("reason=\"connection_refused\"} 1"), "{body}");
    assert!(
        body.contains(&format!(
            "probe_consecutive_failures{{{}}} 0",
            base("redis-ok", &peer_target)
        )),
        "{body}"
    );
    let streak = sample(body, "probe_consecutive_failures", "redis-wrong");
    let failures = body
        .lines()
        .find(|l| l.starts_with("probe_runs_total{name=\"redis-wrong\"") && l.contains("failure"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap();
    assert!(
        streak >= 1.0 && streak == failures,
        "every run of redis-wrong failed, so its streak is all its runs: streak {streak}, failures {failures}\n{body}"
    );
    assert!(
        !body.contains("name=\"elsewhere\""),
        "targets of other locations are not probed"
    );
    assert!(
        body.contains("probe_runs_total{") && body.contains("result=\"failure\"}"),
        "{body}"
    );
    assert!(
        body.contains("probe_failures_total{") && body.contains("reason=\"expect_mismatch\"}"),
        "{body}"
    );
    assert!(body.contains("probe_connect_duration_seconds{"), "{body}");
    assert!(body.contains("vantage_targets{probe=\"tcp\"} 3"), "{body}");
    assert!(
        body.contains("vantage_build_info{version=\"0.1.0\",revision=\""),
        "{body}"
    );
    assert!(
        body.contains("vantage_config_last_reload_successful 1"),
        "{body}"
    );
    assert!(
        body.contains("vantage_probe_schedule_delay_seconds_bucket{le=\"+Inf\"}"),
        "{body}"
    );
    assert!(body.contains("process_cpu_seconds_total "), "{body}");
    assert!(body.contains("process_open_fds "), "{body}");

    promtool_check(body);

    let om = http_get(vantage.addr, "/metrics", Some(OPENMETRICS)).unwrap();
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
    assert!(om.body.contains("# TYPE probe_failure info"), "{}", om.body);
    assert!(om.body.contains("# TYPE probe_runs counter"), "{}", om.body);

    let (status, stderr) = vantage.stop("TERM");
    assert!(status.success(), "exit on SIGTERM: {status:?}\n{stderr}");
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(
        stderr.contains("target is down") && stderr.contains("reason=expect_mismatch"),
        "{stderr}"
    );
}

#[test]
fn endpoints_answer_and_refuse_what_they_should() {
    let dir = TempDir::new("endpoints");
    let vantage = Vantage::start(&config(&dir, redis_like_peer()), &[]);

    let healthy = http_get(vantage.addr, "/-/healthy", None).unwrap();
    assert_eq!(healthy.status, 200);
    let ready = http_get(vantage.addr, "/-/ready", None).unwrap();
    assert_eq!(ready.status, 200);

    wait_for(Duration::from_secs(15), "a run of every target", || {
        http_get(vantage.addr, "/", None).is_some_and(|r| !r.body.contains("PENDING"))
    });
    let page = http_get(vantage.addr, "/", None).unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.body.contains("vantage at test-lab"), "{}", page.body);
    assert!(
        page.body.contains("redis-ok") && page.body.contains(">UP<"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("expect_mismatch (step 1)"),
        "{}",
        page.body
    );
    assert!(page.body.contains("connection_refused"), "{}", page.body);

    assert_eq!(http_get(vantage.addr, "/nope", None).unwrap().status, 404);
    let post = http_request(vantage.addr, "POST", "/metrics", None).unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    let (status, _) = vantage.stop("TERM");
    assert!(status.success());
}

#[test]
fn json_logs_are_one_object_per_line_and_sigint_exits_cleanly() {
    let dir = TempDir::new("json");
    let vantage = Vantage::start(&config(&dir, redis_like_peer()), &["--log.format=json"]);
    let (status, stderr) = vantage.stop("INT");
    assert!(status.success());
    let started = stderr
        .lines()
        .find(|l| l.contains("vantage started"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        started.starts_with('{') && started.ends_with('}'),
        "{started}"
    );
    assert!(
        started.starts_with(r#"{"ts":""#)
            && started.contains(r#","level":"info","msg":"vantage started","#),
        "{started}"
    );
    assert!(stderr.lines().all(|l| l.starts_with('{')), "{stderr}");
    assert!(stderr.contains("\"signal\":\"SIGINT\""), "{stderr}");
}

#[test]
fn logs_use_prometheus_keys_and_name_the_probe_target_its_address_and_location() {
    let dir = TempDir::new("logfmt");
    let path = config(&dir, redis_like_peer());
    let vantage = Vantage::start(&path, &[]);
    wait_for(Duration::from_secs(10), "the down event", || {
        vantage
            .log()
            .contains("msg=\"target is down\" name=nothing-listens")
    });
    let (_, log) = vantage.stop("TERM");
    let down = log
        .lines()
        .find(|l| l.contains("msg=\"target is down\" name=nothing-listens"))
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let port = text
        .split("name: nothing-listens, type: tcp, host: 127.0.0.1, port: ")
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .unwrap();
    for field in [
        " level=warn ".to_string(),
        format!(" target=127.0.0.1:{port} "),
        format!(" address=127.0.0.1:{port} "),
        " location=test-lab ".to_string(),
        " reason=connection_refused ".to_string(),
    ] {
        assert!(down.contains(&field), "{field:?} missing from: {down}");
    }
    assert!(down.starts_with("ts=20"), "{down}");
    // The Rust module path is not written: `target` means the probe target.
    assert!(!log.contains("target=vantage"), "{log}");
    assert!(!log.contains(" message="), "{log}");
}

#[test]
fn location_from_the_environment_overrides_the_config() {
    let dir = TempDir::new("location");
    let path = config(&dir, redis_like_peer());
    let port = closed_port();
    let mut child = Command::new(crate::support::vantage_bin())
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("VANTAGE_LOCATION", "other-lab")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(
        Duration::from_secs(15),
        "the elsewhere target to run",
        || {
            http_get(addr, "/metrics", None).is_some_and(|r| {
                r.body.contains("probe_success{name=\"elsewhere\"")
                    && r.body.contains("location=\"other-lab\"")
            })
        },
    );
    let body = http_get(addr, "/metrics", None).unwrap().body;
    assert!(!body.contains("location=\"test-lab\""), "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_bad_config_stops_start_up_naming_file_line_and_key() {
    let dir = TempDir::new("badconfig");
    let path = dir.write(
        "exporter.yml",
        "targets:\n  - name: a\n    type: tcp\n    host: h\n    port: 1\n    timeout: 5\n",
    );
    let out = Command::new(crate::support::vantage_bin())
        .arg(format!("--config.file={}", path.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", closed_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:6:14: targets[0].timeout: a duration needs a unit",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn a_busy_listen_address_is_a_clear_start_up_error() {
    let dir = TempDir::new("busy");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(crate::support::vantage_bin())
        .arg(format!(
            "--config.file={}",
            config(&dir, redis_like_peer()).display()
        ))
        .arg(format!(
            "--web.listen-address={}",
            taken.local_addr().unwrap()
        ))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot listen") && stderr.contains("Address already in use"),
        "{stderr}"
    );
}
