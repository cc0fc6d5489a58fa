//! `tls.key_exchange`: the key shares each choice sends, read off the wire; the group a real
//! server then chooses, as vantage reports it and as the server saw it; and the
//! HelloRetryRequest that lets `classic` complete with a server that takes only the hybrid.

use rustls::NamedGroup;
use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use vantage::tls::TlsVersion;

use crate::interop::SServer;
use crate::pki::{Leaf, Pki};
use crate::support::{self, TempDir, run, target};
use crate::tls::{Server, facts, probe};

const CLASSIC: &str = "      key_exchange: classic\n";
const POST_QUANTUM: &str = "      key_exchange: post_quantum\n";

/// The first ClientHello a target sends: the groups it sends key shares for, and the groups
/// its supported_groups extension lists, each in order.
async fn client_hello(tls: &str) -> (Vec<NamedGroup>, Vec<NamedGroup>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = target(port, tls);
    let running = tokio::spawn(async move { run(&t).await });
    let (mut stream, _) = listener.accept().await.unwrap();
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], 22, "a handshake record");
    let mut hello = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
    stream.read_exact(&mut hello).await.unwrap();
    drop(stream);
    // The run fails (the peer left mid-handshake): only what it sent matters here.
    let _ = running.await;
    offered(&hello)
}

/// Reads a ClientHello handshake message (RFC 8446, 4.1.2) down to its key_share (51) and
/// supported_groups (10) extensions.
fn offered(hello: &[u8]) -> (Vec<NamedGroup>, Vec<NamedGroup>) {
    let u16_at = |at: usize| usize::from(u16::from_be_bytes([hello[at], hello[at + 1]]));
    assert_eq!(hello[0], 1, "a ClientHello");
    // Message header (4), legacy_version (2), random (32), then the session id.
    let mut at = 4 + 2 + 32;
    at += 1 + usize::from(hello[at]);
    at += 2 + u16_at(at); // cipher suites
    at += 1 + usize::from(hello[at]); // compression methods
    let end = at + 2 + u16_at(at);
    at += 2;
    let (mut shares, mut groups) = (Vec::new(), Vec::new());
    while at < end {
        let (kind, len) = (u16_at(at), u16_at(at + 2));
        let body = &hello[at + 4..at + 4 + len];
        let group = |i: usize| NamedGroup::from(u16::from_be_bytes([body[i], body[i + 1]]));
        match kind {
            10 => groups = (2..len).step_by(2).map(group).collect(),
            51 => {
                let mut i = 2;
                while i < len {
                    shares.push(group(i));
                    i += 4 + usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
                }
            }
            _ => {}
        }
        at += 4 + len;
    }
    (shares, groups)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_choice_sends_its_shares_and_lists_every_group() {
    use NamedGroup::{X25519, X25519MLKEM768, secp256r1, secp384r1};
    let classic = (
        vec![X25519],
        vec![X25519, secp256r1, secp384r1, X25519MLKEM768],
    );
    assert_eq!(client_hello("    tls: {}\n").await, classic, "the default");
    assert_eq!(
        client_hello("    tls: {key_exchange: classic}\n").await,
        classic
    );
    assert_eq!(
        client_hello("    tls: {key_exchange: post_quantum}\n").await,
        (
            vec![X25519MLKEM768, X25519],
            vec![X25519MLKEM768, X25519, secp256r1, secp384r1]
        )
    );
}

/// The group reported and whether a HelloRetryRequest came, for one run that succeeded.
fn negotiated(run: &vantage::probe::Run) -> (Option<&str>, bool) {
    assert!(run.success(), "{:?}", run.failure());
    let f = facts(run);
    (f.key_exchange.as_deref(), f.hello_retry)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_takes_the_group_each_choice_leads_with() {
    let pki = Pki::new("kx");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    // rustls' default groups, the hybrid among them; rustls picks the client's first.
    let (port, seen) = Server::new(&leaf, &[]).start().await;
    let classic = probe(port, &pki.yaml(CLASSIC)).await;
    assert_eq!(negotiated(&classic), (Some("X25519"), false));
    let post_quantum = probe(port, &pki.yaml(POST_QUANTUM)).await;
    assert_eq!(negotiated(&post_quantum), (Some("X25519MLKEM768"), false));
    assert_eq!(
        *seen.kx.lock().unwrap(),
        [
            (Some(NamedGroup::X25519), false),
            (Some(NamedGroup::X25519MLKEM768), false)
        ],
        "what the server saw"
    );

    // TLS 1.2 has no hybrid: both choices agree on X25519 there.
    let mut tls12 = Server::new(&leaf, &[]);
    tls12.tls12_only = true;
    let (port, _) = tls12.start().await;
    for choice in [CLASSIC, POST_QUANTUM] {
        let run = probe(port, &pki.yaml(choice)).await;
        assert_eq!(negotiated(&run), (Some("X25519"), false), "{choice}");
        assert_eq!(facts(&run).version, Some(TlsVersion::Tls12));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_completes_with_a_hybrid_only_server_after_a_retry() {
    let pki = Pki::new("kx");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let mut hybrid_only = Server::new(&leaf, &[]);
    hybrid_only.kx_groups = vec![X25519MLKEM768];
    let (port, seen) = hybrid_only.start().await;
    let classic = probe(port, &pki.yaml(CLASSIC)).await;
    assert_eq!(negotiated(&classic), (Some("X25519MLKEM768"), true));
    let post_quantum = probe(port, &pki.yaml(POST_QUANTUM)).await;
    assert_eq!(negotiated(&post_quantum), (Some("X25519MLKEM768"), false));
    assert_eq!(
        *seen.kx.lock().unwrap(),
        [
            (Some(NamedGroup::X25519MLKEM768), true),
            (Some(NamedGroup::X25519MLKEM768), false)
        ]
    );

    // The other way round: the hybrid's X25519 part is a share of its own, so a server that
    // takes only X25519 needs no retry from a post_quantum client.
    let mut x25519_only = Server::new(&leaf, &[]);
    x25519_only.kx_groups = vec![X25519];
    let (port, _) = x25519_only.start().await;
    let run = probe(port, &pki.yaml(POST_QUANTUM)).await;
    assert_eq!(negotiated(&run), (Some("X25519"), false));
}

/// A server whose TLS library knows no ML-KEM (OpenSSL before 3.5, as most servers still run)
/// takes the X25519 share that either choice sends, with no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_ml_kem_takes_x25519_from_either_choice() {
    support::needs(&["tool:openssl"]);
    let dir = TempDir::new("kx");
    let pki = Pki::new("kx");
    let leaf = pki.root.leaf(Leaf::server(&["vantage.test"]));
    let (cert, key) = leaf.write(&dir, "leaf");
    let server = SServer::start(&cert, &key, None);
    for choice in [CLASSIC, POST_QUANTUM] {
        let run = probe(server.port, &pki.yaml(choice)).await;
        assert_eq!(negotiated(&run), (Some("X25519"), false), "{choice}");
        assert_eq!(facts(&run).version, Some(TlsVersion::Tls13));
    }
}
