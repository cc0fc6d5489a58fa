//! TLS probes against a non-Rust TLS stack: OpenSSL's `s_server`, started by the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vantage::probe::Reason;
use vantage::tls::TlsVersion;

use crate::http::web_target;
use crate::pki::{Ca, Leaf, days};
use crate::support::{self, TempDir, closed_port, run, target, wait_for};

/// An `openssl s_server` this test started; killed by PID on drop.
pub struct SServer {
    child: Child,
    pub port: u16,
}

impl SServer {
    pub fn start(cert: &str, key: &str, chain: Option<&str>) -> SServer {
        let port = closed_port();
        let mut command = Command::new("openssl");
        command
            .args(["s_server", "-quiet", "-www", "-naccept", "20"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", cert, "-key", key]);
        if let Some(chain) = chain {
            command.args(["-cert_chain", chain]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("openssl runs");
        let server = SServer { child, port };
        wait_for(Duration::from_secs(10), "s_server to listen", || {
            crate::support::socket_states(port).contains("LISTEN")
        });
        server
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_server_valid_expired_and_chain_cases() {
    support::needs(&["tool:openssl"]);
    let dir = TempDir::new("interop");
    let root = Ca::root("interop root");
    dir.write("root.pem", &root.cert.pem());
    let intermediate = root.intermediate("interop intermediate", days(365));
    let chain = dir.write("chain.pem", &intermediate.cert.pem());
    let chain = chain.display().to_string();
    let yaml = format!(
        "    tls:\n      ca_file: {}\n      server_name: vantage.test\n",
        dir.0.join("root.pem").display()
    );

    let valid = intermediate.leaf(Leaf::server(&["vantage.test"]).rsa());
    let (cert, key) = valid.write(&dir, "valid");
    let server = SServer::start(&cert, &key, Some(&chain));
    let result = run(&target(server.port, &yaml)).await;
    assert!(result.success(), "{:?}", result.failure());
    let facts = result.outcome.facts.tls().unwrap();
    assert_eq!(facts.version, Some(TlsVersion::Tls13));
    assert_eq!(facts.chain.len(), 2);
    assert_eq!(facts.chain[1].subject, "CN=interop intermediate");

    // The same leaf without its intermediate.
    let server = SServer::start(&cert, &key, None);
    let result = run(&target(server.port, &yaml)).await;
    assert_eq!(
        result.failure().map(|f| f.reason),
        Some(Reason::TlsUnknownIssuer)
    );

    let expired = intermediate.leaf(Leaf::server(&["vantage.test"]).valid(days(-30), days(-1)));
    let (cert, key) = expired.write(&dir, "expired");
    let server = SServer::start(&cert, &key, Some(&chain));
    let result = run(&target(server.port, &yaml)).await;
    assert_eq!(
        result.failure().map(|f| f.reason),
        Some(Reason::TlsCertExpired)
    );
    let facts = result.outcome.facts.tls().unwrap();
    assert_eq!(facts.chain.len(), 2, "the chain is reported anyway");
}

/// nginx serving http on `plain` and https (HTTP/2 enabled) on `secure`, with `cert`/`key`,
/// logging `request|status|user agent|connection|host|cookie` per request.
fn nginx(dir: &TempDir, plain: u16, secure: u16, cert: &str, key: &str) -> support::Nginx {
    let root = dir.0.display();
    let http = format!(
        "    log_format probe '$request|$status|$http_user_agent|$http_connection|$http_host|$http_cookie';
    access_log {root}/access.log probe;
    server {{
        listen 127.0.0.1:{plain};
        location = /ok {{ add_header Set-Cookie \"seen=1\"; return 200 \"nginx ok\\n\"; }}
        location = /old {{ return 301 /ok; }}
        location = /down {{ return 503; }}
    }}
    server {{
        listen 127.0.0.1:{secure} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /ok {{ return 200 \"nginx tls ok\\n\"; }}
    }}"
    );
    support::Nginx::start(&dir.0, &http, secure)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_answers_http_and_https_probes_and_is_left_nothing() {
    support::needs(&["tool:nginx"]);
    let dir = TempDir::new("nginx");
    let root = Ca::root("nginx root");
    dir.write("root.pem", &root.cert.pem());
    let leaf = root.leaf(Leaf::server(&["vantage.test"]).rsa());
    let (cert, key) = leaf.write(&dir, "server");
    let tls = format!(
        "    tls: {{ca_file: {}, server_name: vantage.test}}\n",
        dir.0.join("root.pem").display()
    );
    let (plain, secure) = (closed_port(), closed_port());
    let _nginx = nginx(&dir, plain, secure, &cert, &key);

    let ok = web_target(&format!("http://127.0.0.1:{plain}/ok"), "");
    for _ in 0..2 {
        let result = run(&ok).await;
        assert!(result.success(), "{:?}", result.failure());
    }
    let moved = run(&web_target(&format!("http://127.0.0.1:{plain}/old"), "")).await;
    assert!(moved.success(), "{:?}", moved.failure());
    let facts = moved.outcome.facts.http().unwrap();
    assert_eq!((facts.redirects(), facts.status()), (1, Some(200)));
    let down = run(&web_target(&format!("http://127.0.0.1:{plain}/down"), "")).await;
    assert_eq!(down.failure().map(|f| f.reason), Some(Reason::HttpStatus));

    let h2 = web_target(
        &format!("https://127.0.0.1:{secure}/ok"),
        &format!("{tls}    http: {{http2: true, body_regex: \"tls ok\"}}\n"),
    );
    let result = run(&h2).await;
    assert!(result.success(), "{:?}", result.failure());
    let facts = result.outcome.facts.http().unwrap();
    assert_eq!(facts.version(), Some(http::Version::HTTP_2));
    let tls_facts = result.outcome.facts.tls().unwrap();
    assert_eq!(tls_facts.chain[0].subject, "CN=vantage.test");
    assert_eq!(tls_facts.version, Some(TlsVersion::Tls13));

    let agent = concat!("vantage/", env!("CARGO_PKG_VERSION"));
    let log = support::Nginx::log(&dir.0);
    assert_eq!(log.len(), 6, "{log:#?}");
    assert_eq!(
        log[0],
        format!("GET /ok HTTP/1.1|200|{agent}|close|127.0.0.1:{plain}|-")
    );
    assert_eq!(log[1], log[0], "no cookie came back on the second run");
    assert!(log[2].starts_with("GET /old HTTP/1.1|301|"), "{log:#?}");
    assert!(
        log[5].starts_with(&format!("GET /ok HTTP/2.0|200|{agent}|-|")),
        "{log:#?}"
    );

    for port in [plain, secure] {
        wait_for(Duration::from_secs(10), "only closed sockets", || {
            crate::support::socket_states(port)
                .iter()
                .all(|s| matches!(*s, "LISTEN" | "TIME_WAIT"))
        });
    }
}
