//! HTTP/2 on vantage's endpoints, through the real binary: negotiated through TLS (ALPN) as in
//! the exporter-toolkit, several requests side by side on one connection, the web config's
//! headers on every answer, and `http2: false` keeping clients on HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::pki::{Ca, Leaf};
use crate::support::{TempDir, Vantage};

/// A TLS connection to vantage at `addr`, trusting `ca`, offering `alpn`; and the protocol
/// that was negotiated.
async fn connect(
    addr: SocketAddr,
    ca: &Ca,
    alpn: &[&[u8]],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("vantage.test").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    (tls, negotiated)
}

/// vantage serving TLS for `vantage.test` with `http_server_config` as given.
fn start(dir: &TempDir, ca: &Ca, http: &str) -> Vantage {
    ca.leaf(Leaf::server(&["vantage.test"]))
        .write(dir, "server");
    let web = dir.write(
        "web.yml",
        &format!(
            "tls_server_config: {{cert_file: server.pem, key_file: server.key}}\n\
             http_server_config:\n{http}"
        ),
    );
    let (command, addr) = crate::web_config::tls_vantage(dir, &web);
    Vantage::spawn_until(command, addr, |addr| {
        crate::web_config::tls_get(addr, ca, None).is_ok_and(|l| l.contains(" 200"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_offered_through_tls_and_serves_requests_side_by_side() {
    let dir = TempDir::new("web-h2");
    let ca = Ca::root("web h2 ca");
    let vantage = start(&dir, &ca, "  headers: {X-Frame-Options: deny}\n");
    let (tls, negotiated) = connect(vantage.addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(negotiated.as_deref(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let requests = ["/metrics", "/-/healthy", "/-/ready", "/"].map(|path| {
        let mut sender = sender.clone();
        tokio::spawn(async move {
            let request = hyper::Request::get(format!("https://vantage.test{path}"))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            let version = response.version();
            let status = response.status().as_u16();
            let frame = response.headers().get("x-frame-options").cloned();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (path, version, status, frame, body)
        })
    });
    for request in requests {
        let (path, version, status, frame, body) = request.await.unwrap();
        assert_eq!(version, hyper::Version::HTTP_2, "{path}");
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            frame.as_ref().map(|v| v.as_bytes()),
            Some(&b"deny"[..]),
            "{path}"
        );
        assert!(!body.is_empty(), "{path}");
        if path == "/metrics" {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("vantage_build_info{"), "{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_false_keeps_clients_on_http_1_1() {
    let dir = TempDir::new("web-h1");
    let ca = Ca::root("web h1 ca");
    let vantage = start(&dir, &ca, "  http2: false\n");
    let (_, negotiated) = connect(vantage.addr, &ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(negotiated.as_deref(), Some(&b"http/1.1"[..]));
}
