//! `--web.config.file` through the real binary, with a file as written for node_exporter:
//! bcrypt users made by `htpasswd`, the toolkit's headers, changes read without a restart, a
//! broken edit, TLS with verified client certificates, and client certificates taken
//! unverified, which vantage refuses.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;

use crate::pki::{Ca, Issued, Leaf};
use crate::support::{
    TempDir, Vantage, closed_port, exchange, http_get, needs, one_target_config, vantage_bin,
    wait_for,
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
    let config = one_target_config(&dir);
    let headers = "http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n";
    let web = dir.write("web.yml", headers);
    let vantage = Vantage::start(
        &config,
        &[
            &format!("--web.config.file={}", web.display()),
            "--web.enable-probe",
        ],
    );
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
    for path in ["/metrics", "/-/healthy", "/", "/probe?target=127.0.0.1"] {
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

    // A flood of wrong passwords (each new, so each would need a bcrypt run) cannot starve a
    // scrape whose password is remembered: 50 clients guessing for 3 s.
    let addr = vantage.addr;
    let stop = Instant::now() + Duration::from_secs(3);
    let guessers: Vec<_> = (0..50)
        .map(|t| {
            std::thread::spawn(move || {
                let mut i = 0u32;
                while Instant::now() < stop && i < 10_000 {
                    let token = base64::engine::general_purpose::STANDARD
                        .encode(format!("prom:guess-{t}-{i}"));
                    let _ = exchange(
                        addr,
                        &format!(
                            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
                        ),
                    );
                    i += 1;
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while Instant::now() + Duration::from_millis(500) < stop {
        let (status, took) = get_as(&vantage, "prom", "s3cret");
        assert_eq!(status, 200, "the right password during the flood");
        slowest = slowest.max(took);
        std::thread::sleep(Duration::from_millis(200));
    }
    for g in guessers {
        g.join().unwrap();
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?} during the flood"
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

/// vantage on a one-target config and the web config `web`, and the address it will listen on.
pub fn tls_vantage(dir: &TempDir, web: &std::path::Path) -> (Command, SocketAddr) {
    let config = one_target_config(dir);
    let addr: SocketAddr = format!("127.0.0.1:{}", closed_port()).parse().unwrap();
    let mut command = Command::new(vantage_bin());
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--web.listen-address={addr}"));
    (command, addr)
}

/// A GET of /-/ready over TLS to `vantage.test`, trusting `ca`, with `client`'s certificate if
/// given: the answer's first line, or why there is none.
pub fn tls_get(addr: SocketAddr, ca: &Ca, client: Option<&Issued>) -> Result<String, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => builder
            .with_client_auth_cert(vec![c.der()], c.key_der())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("vantage.test").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(b"GET /-/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let read = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    match (text.lines().next(), read) {
        (Some(first), _) => Ok(first.to_string()),
        (None, Err(e)) => Err(e.to_string()),
        (None, Ok(_)) => Err("closed without an answer".into()),
    }
}

#[test]
fn mtls_from_a_web_config_admits_only_verified_clients_with_an_allowed_san() {
    let dir = TempDir::new("webconfig-tls");
    let server_ca = Ca::root("web server ca");
    let client_ca = Ca::root("web client ca");
    server_ca
        .leaf(Leaf::server(&["vantage.test"]))
        .write(&dir, "server");
    dir.write("client-ca.pem", &client_ca.cert.pem());
    let allowed = client_ca.leaf(Leaf::server(&["prometheus.vantage.test"]).client());
    let other = client_ca.leaf(Leaf::server(&["other.vantage.test"]).client());
    let stranger = Ca::root("stranger").leaf(Leaf::server(&["prometheus.vantage.test"]).client());
    // Relative paths: relative to the web config's folder, as in the toolkit.
    let web = dir.write(
        "web.yml",
        "tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: client-ca.pem
  client_allowed_sans: [prometheus.vantage.test]
  min_version: TLS12
  curve_preferences: [X25519, CurveP256]
",
    );
    let (command, addr) = tls_vantage(&dir, &web);
    let _vantage = Vantage::spawn_until(command, addr, |addr| {
        tls_get(addr, &server_ca, Some(&allowed)).is_ok_and(|l| l.contains(" 200"))
    });
    assert_eq!(
        tls_get(addr, &server_ca, Some(&allowed)).unwrap(),
        "HTTP/1.1 200 OK"
    );
    assert!(
        tls_get(addr, &server_ca, None).is_err(),
        "no client certificate"
    );
    assert!(
        tls_get(addr, &server_ca, Some(&stranger)).is_err(),
        "a client certificate from another CA"
    );
    assert!(
        tls_get(addr, &server_ca, Some(&other)).is_err(),
        "a verified client certificate without an allowed SAN"
    );
    assert!(
        http_get(addr, "/-/ready", None).is_none(),
        "no plaintext on a TLS port"
    );
}

#[test]
fn a_web_config_that_would_take_unverified_client_certificates_is_refused_at_start() {
    let dir = TempDir::new("webconfig-tls");
    let config = one_target_config(&dir);
    let web = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAnyClientCert\n",
    );
    let out = Command::new(vantage_bin())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.config.file={}", web.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", closed_port()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("RequireAnyClientCert takes client certificates without verifying them"),
        "{stderr}"
    );
}

/// The toolkit's inline PEM (`cert`, `key`, `client_ca`, for certificates kept in a secret
/// manager rather than files) and its `rate_limit`, which turns away requests past the burst
/// with 429 before any check of the client.
#[test]
fn inline_certificates_and_a_rate_limit_from_the_toolkit_format_work() {
    let dir = TempDir::new("webconfig-inline");
    let server_ca = Ca::root("web server ca");
    let client_ca = Ca::root("web client ca");
    let server = server_ca.leaf(Leaf::server(&["vantage.test"]));
    let client = client_ca.leaf(Leaf::server(&["prometheus.vantage.test"]).client());
    let block = |pem: &str| {
        pem.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    };
    let web = dir.write(
        "web.yml",
        &format!(
            "tls_server_config:
  cert: |
{}  key: |
{}  client_ca: |
{}  client_auth_type: RequireAndVerifyClientCert
rate_limit:
  interval: 1m
  burst: 3
",
            block(&server.cert.pem()),
            block(&server.key.serialize_pem()),
            block(&client_ca.cert.pem()),
        ),
    );
    let (command, addr) = tls_vantage(&dir, &web);
    // Every answer takes a request of the burst, a 503 before vantage is ready included: so
    // count them all, from the first.
    let mut statuses = Vec::new();
    let _vantage = Vantage::spawn_until(command, addr, |addr| {
        let status = tls_get(addr, &server_ca, Some(&client));
        statuses.extend(status.iter().cloned());
        status.is_ok_and(|l| !l.contains(" 503"))
    });
    while statuses.len() < 6 {
        statuses.push(tls_get(addr, &server_ca, Some(&client)).unwrap());
    }
    let limited = statuses
        .iter()
        .position(|s| s.contains(" 429"))
        .unwrap_or(statuses.len());
    assert_eq!(limited, 3, "a burst of 3: {statuses:?}");
    assert!(
        statuses[limited..]
            .iter()
            .all(|s| s == "HTTP/1.1 429 Too Many Requests"),
        "then one a minute: {statuses:?}"
    );
    assert!(
        statuses.contains(&"HTTP/1.1 200 OK".to_string()),
        "{statuses:?}"
    );
    assert!(
        tls_get(addr, &server_ca, None).is_err(),
        "the inline client CA is required"
    );
}
