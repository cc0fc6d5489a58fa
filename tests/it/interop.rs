//! TLS probes against a non-Rust TLS stack: OpenSSL's `s_server`, started by the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vantage::probe::Reason;
use vantage::tls::TlsVersion;

use crate::pki::{Ca, Leaf, days};
use crate::support::{TempDir, closed_port, run, target, tool_or_skip, wait_for};

/// An `openssl s_server` this test started; killed by PID on drop.
struct SServer {
    child: Child,
    port: u16,
}

impl SServer {
    fn start(cert: &str, key: &str, chain: Option<&str>) -> SServer {
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
    if !tool_or_skip("openssl", "openssl_s_server_valid_expired_and_chain_cases") {
        return;
    }
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
    let facts = result.outcome.trace.tls.as_ref().unwrap();
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
    let facts = result.outcome.trace.tls.as_ref().unwrap();
    assert_eq!(facts.chain.len(), 2, "the chain is reported anyway");
}
