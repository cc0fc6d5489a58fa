//! `--web.config.file` through the real binary, with a file as written for node_exporter:
//! bcrypt users made by `htpasswd`, the toolkit's headers, changes read without a restart, a
//! broken edit, and a TLS section that vantage refuses rather than serving plaintext.

use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::support::{
    TempDir, Vantage, closed_port, exchange, http_get, needs, vantage_bin, wait_for,
};

/// `user:hash` from `htpasswd -nbBC 10`, as a node_exporter user would make it.
fn htpasswd(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        .args(["-nbBC", "10", user, password])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A GET of /metrics as `user:password`: its status, and how long the answer took.
fn get_as(vantage: &Vantage, user: &str, password: &str) -> (u16, Duration) {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let started = Instant::now();
    let r = exchange(
        vantage.addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
        ),
    )
    .expect("an answer");
    (r.status, started.elapsed())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

#[test]
fn basic_auth_from_a_node_exporter_web_config_guards_every_endpoint() {
    needs(&["tool:htpasswd"]);
    let dir = TempDir::new("webconfig");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: {}}}\n",
            closed_port()
        ),
    );
    let headers = "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n";
    let web = dir.write("web.yml", headers);
    let vantage = Vantage::start(&config, &[&format!("--web.config.file={}", web.display())]);
    let open = http_get(vantage.addr, "/metrics", None).unwrap();
    assert_eq!(open.status, 200, "no users: no authentication");
    assert_eq!(open.header("x-frame-options"), Some("deny"));

    // Users added to the file apply without a restart.
    let (user, hash) = htpasswd("prom", "s3cret")
        .split_once(':')
        .map(|(u, h)| (u.to_string(), h.to_string()))
        .unwrap();
    dir.write(
        "web.yml",
        &format!("{headers}basic_auth_users:\n  {user}: {hash}\n"),
    );
    wait_for(Duration::from_secs(5), "the users to apply", || {
        http_get(vantage.addr, "/metrics", None).is_some_and(|r| r.status == 401)
    });
    for path in ["/metrics", "/-/healthy", "/"] {
        let refused = http_get(vantage.addr, path, None).unwrap();
        assert_eq!(refused.status, 401, "{path}");
        assert_eq!(
            refused.header("www-authenticate"),
            Some("Basic realm=\"vantage\"")
        );
        assert_eq!(refused.header("x-frame-options"), Some("deny"));
    }
    assert_eq!(get_as(&vantage, "prom", "s3cret").0, 200);
    assert_eq!(get_as(&vantage, "prom", "wrong").0, 401);
    assert_eq!(get_as(&vantage, "nobody", "s3cret").0, 401);

    // An unknown user is checked against a hash too: answering does not take less time than a
    // wrong password does (each password new, so that no verdict is cached).
    let wrong = median(
        (0..3)
            .map(|i| get_as(&vantage, "prom", &format!("w{i}")).1)
            .collect(),
    );
    let unknown = median(
        (0..3)
            .map(|i| get_as(&vantage, &format!("u{i}"), "x").1)
            .collect(),
    );
    assert!(
        unknown * 3 >= wrong,
        "unknown users answered in {unknown:?}, wrong passwords in {wrong:?}"
    );

    // A broken edit answers 500 until it is fixed; the log says why.
    dir.write("web.yml", "basic_auth_users: [\n");
    wait_for(Duration::from_secs(5), "the broken file to show", || {
        http_get(vantage.addr, "/metrics", None).is_some_and(|r| r.status == 500)
    });
    assert!(
        vantage.log().contains("the web config is broken"),
        "{}",
        vantage.log()
    );
    dir.write("web.yml", &format!("basic_auth_users:\n  {user}: {hash}\n"));
    wait_for(Duration::from_secs(5), "the fixed file to apply", || {
        get_as(&vantage, "prom", "s3cret").0 == 200
    });
}

#[test]
fn a_web_config_with_tls_is_refused_at_start_rather_than_served_in_plaintext() {
    let dir = TempDir::new("webconfig-tls");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - {{name: a, type: tcp, host: 127.0.0.1, port: {}}}\n",
            closed_port()
        ),
    );
    let web = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let out = Command::new(vantage_bin())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", closed_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not serve TLS yet"), "{stderr}");
}
