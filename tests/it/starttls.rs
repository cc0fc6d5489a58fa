//! STARTTLS against the real servers of each dialect (see `servers`): the certificate facts of
//! the upgraded connection, a polite end that leaves the server holding nothing after repeated
//! runs, and `starttls_unsupported` from the same server with TLS turned off.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use vantage::config::Target;
use vantage::probe::{Event, Reason, Run};
use vantage::report;

use crate::pki::{Leaf, Pki};
use crate::servers::{self, Chain, Daemon, Tls};
use crate::support::{self, TempDir, promtool_check, sample, scrape_when_ready, vantage_bin};

/// Runs per variant: enough that a connection left behind per run would show.
const RUNS: usize = 5;

struct Case {
    dialect: &'static str,
    /// What the test needs (its line in tests/needs): the server's executable, and root where
    /// the server must run as a user of its own.
    needs: &'static [&'static str],
    start: fn(Tls) -> Daemon,
    /// Which of the server's ports speaks this dialect.
    port: usize,
    /// What our goodbye says, in the run's events (the command, or for binary protocols its
    /// size), inside TLS and, after a refusal, in plaintext; `None` where the dialect has none.
    goodbye: Option<&'static str>,
    refused_goodbye: Option<&'static str>,
    /// What our goodbye to a server whose certificate failed the verdict says, and how many
    /// lines (or messages) we say in all then: the negotiation's and the goodbye, nothing else.
    untrusted_goodbye: Option<&'static str>,
    untrusted_said: usize,
    /// What the server logs once per session that ended politely, and once per refusal that
    /// ended politely.
    polite: &'static str,
    refused_polite: &'static str,
    /// What the server would log about a client that misbehaved.
    complaints: &'static [&'static str],
}

fn said_by_us(run: &Run, needle: &str) -> bool {
    run.outcome
        .trace
        .events
        .iter()
        .any(|e| matches!(&e.what, Event::Said { client: true, text } if text.contains(needle)))
}

fn show(target: &Target, run: &Run, daemon: &Daemon) -> String {
    format!(
        "{}\n--- {} log ---\n{}",
        report::render(target, run),
        daemon.name,
        daemon.log()
    )
}

async fn prove(case: Case) {
    support::needs(case.needs);
    let chain = Chain::new(case.dialect);
    let daemon = (case.start)(Some(&chain));
    let starttls = format!("      starttls: {}\n", case.dialect);
    let target = support::target(daemon.ports[case.port], &chain.pki.yaml(&starttls));
    for _ in 0..RUNS {
        let run = support::run(&target).await;
        let shown = show(&target, &run, &daemon);
        assert!(run.success(), "{shown}");
        let trace = &run.outcome.trace;
        assert!(trace.phases.starttls.get().is_some(), "{shown}");
        assert!(trace.phases.tls.get().is_some(), "{shown}");
        let facts = run.outcome.facts.tls().expect("TLS facts");
        assert_eq!(facts.chain.len(), 2, "leaf and intermediate: {shown}");
        assert_eq!(facts.chain[0].sha256, chain.leaf_sha256, "{shown}");
        assert!(
            facts.chain[1].subject.contains(&chain.intermediate),
            "{shown}"
        );
        let verification = facts.verification.as_ref().unwrap();
        assert_eq!(verification.chain, Ok(()), "{shown}");
        assert_eq!(verification.hostname, Ok(()), "{shown}");
        assert_eq!(facts.earliest_expiry(), Some((0, chain.leaf_not_after)));
        if let Some(goodbye) = case.goodbye {
            assert!(said_by_us(&run, goodbye), "{shown}");
        }
    }

    // Trusting only the Mozilla roots, the chain fails the verdict: the server still gets the
    // protocol's goodbye inside TLS, and nothing else.
    let untrusted = support::target(
        daemon.ports[case.port],
        &format!(
            "    tls: {{starttls: {}, server_name: vantage.test}}\n",
            case.dialect
        ),
    );
    for _ in 0..RUNS {
        let run = support::run(&untrusted).await;
        let shown = show(&untrusted, &run, &daemon);
        let failure = run
            .failure()
            .unwrap_or_else(|| panic!("succeeded: {shown}"));
        assert_eq!(failure.reason, Reason::TlsUnknownIssuer, "{shown}");
        assert!(
            run.outcome.facts.tls().is_some_and(|f| f.chain.len() == 2),
            "{shown}"
        );
        if let Some(goodbye) = case.untrusted_goodbye {
            assert!(said_by_us(&run, goodbye), "{shown}");
        }
        let said = run.outcome.trace.events.iter();
        let said = said.filter(|e| matches!(e.what, Event::Said { client: true, .. }));
        assert_eq!(said.count(), case.untrusted_said, "{shown}");
    }
    daemon.assert_holds_nothing();
    daemon.wait_for_log(case.polite, 2 * RUNS);
    let log = daemon.log();
    for complaint in case.complaints {
        assert!(!log.contains(complaint), "{complaint:?} in:\n{log}");
    }
    drop(daemon);

    let plain = (case.start)(None);
    let target = support::target(plain.ports[case.port], &chain.pki.yaml(&starttls));
    for _ in 0..RUNS {
        let run = support::run(&target).await;
        let shown = show(&target, &run, &plain);
        let failure = run
            .failure()
            .unwrap_or_else(|| panic!("succeeded: {shown}"));
        assert_eq!(failure.reason, Reason::StarttlsUnsupported, "{shown}");
        assert!(run.outcome.facts.tls().is_none(), "{shown}");
        assert!(run.outcome.trace.phases.starttls.get().is_none(), "{shown}");
        if let Some(goodbye) = case.refused_goodbye {
            assert!(said_by_us(&run, goodbye), "{shown}");
        }
    }
    plain.assert_holds_nothing();
    plain.wait_for_log(case.refused_polite, RUNS);
    let log = plain.log();
    for complaint in case.complaints {
        assert!(!log.contains(complaint), "{complaint:?} in:\n{log}");
    }
}

#[tokio::test]
async fn imap_on_dovecot() {
    prove(Case {
        dialect: "imap",
        needs: &["tool:/usr/sbin/dovecot"],
        start: servers::dovecot,
        port: 0,
        goodbye: Some("v2 LOGOUT"),
        refused_goodbye: Some("v2 LOGOUT"),
        untrusted_goodbye: Some("v2 LOGOUT"),
        untrusted_said: 2,
        polite: "imap-login: Info: Disconnected: Aborted login by logging out",
        refused_polite: "imap-login: Info: Disconnected: Aborted login by logging out",
        complaints: &["Error", "Connection closed", "Disconnected: Disconnected"],
    })
    .await;
}

#[tokio::test]
async fn pop3_on_dovecot() {
    prove(Case {
        dialect: "pop3",
        needs: &["tool:/usr/sbin/dovecot"],
        start: servers::dovecot,
        port: 1,
        goodbye: Some("QUIT"),
        refused_goodbye: Some("QUIT"),
        untrusted_goodbye: Some("QUIT"),
        untrusted_said: 2,
        polite: "pop3-login: Info: Disconnected: Aborted login by logging out",
        refused_polite: "pop3-login: Info: Disconnected: Aborted login by logging out",
        complaints: &["Error", "Connection closed", "Disconnected: Disconnected"],
    })
    .await;
}

#[tokio::test]
async fn ftp_on_vsftpd() {
    prove(Case {
        dialect: "ftp",
        needs: &["tool:/usr/sbin/vsftpd"],
        start: servers::vsftpd,
        port: 0,
        goodbye: Some("QUIT"),
        refused_goodbye: Some("QUIT"),
        untrusted_goodbye: Some("QUIT"),
        untrusted_said: 2,
        polite: "FTP response: Client \"127.0.0.1\", \"221 Goodbye.\"",
        refused_polite: "FTP response: Client \"127.0.0.1\", \"221 Goodbye.\"",
        complaints: &["OOPS", "without SSL shutdown"],
    })
    .await;
}

#[tokio::test]
async fn ldap_on_slapd() {
    prove(Case {
        dialect: "ldap",
        needs: &["tool:/usr/sbin/slapd"],
        start: servers::slapd,
        port: 0,
        goodbye: Some("7 bytes"),
        refused_goodbye: Some("7 bytes"),
        untrusted_goodbye: Some("7 bytes"),
        untrusted_said: 2,
        polite: "UNBIND",
        refused_polite: "UNBIND",
        complaints: &["connection lost", "TLS negotiation failure", "can't accept"],
    })
    .await;
}

// Hostile peers: not a dialect's server, but what a broken or malicious one may do. Each must
// fail its run with a clear reason, within the deadline, and never panic.

/// Reads what the client sends until a line ends (or it stops), so a reply follows a command.
fn read_line(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    while stream.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {}
}

async fn hostile(serve: fn(TcpStream), dialect: &str) -> Run {
    let pki = Pki::new("hostile-starttls");
    let port = support::thread_peer(serve);
    let extra = format!(
        "    timeout: 2s\n{}",
        pki.yaml(&format!("      starttls: {dialect}\n"))
    );
    let target = support::target(port, &extra);
    let started = Instant::now();
    let run = support::run(&target).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the run outlived its deadline"
    );
    run
}

fn failed(run: &Run) -> (Reason, String) {
    let failure = run.failure().expect("a hostile peer cannot pass");
    (failure.reason, failure.detail.clone())
}

#[tokio::test]
async fn a_go_ahead_followed_by_more_bytes_is_refused_before_the_handshake() {
    let run = hostile(
        |mut s| {
            let _ = s.write_all(b"220 mx\r\n");
            read_line(&mut s);
            let _ = s.write_all(b"250-mx\r\n250 STARTTLS\r\n");
            read_line(&mut s);
            // The injection of CVE-2011-0411: a reply the client would read as if from TLS.
            let _ = s.write_all(b"220 go ahead\r\n250 injected\r\n");
            std::thread::sleep(Duration::from_secs(3));
        },
        "smtp",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(detail.contains("14 bytes after its go-ahead"), "{detail}");
    assert!(run.outcome.facts.tls().is_none(), "no handshake was tried");
}

#[tokio::test]
async fn a_reply_of_endless_lines_is_cut_at_200_lines() {
    let run = hostile(
        |mut s| {
            let line = b"220-flood flood flood flood flood flood flood flood flood flood\r\n";
            // Far past the limit, bounded so that the peer ends even if the client never stops.
            for _ in 0..100_000 {
                if s.write_all(line).is_err() {
                    break;
                }
            }
        },
        "smtp",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(
        detail.contains("the greeting has more than 200 lines"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_line_without_an_end_is_cut_at_the_plaintext_limit() {
    let run = hostile(
        |mut s| {
            let chunk = [b'x'; 4096];
            for _ in 0..1_000 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        },
        "imap",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(
        detail.contains("65536 bytes without the greeting"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let run = hostile(
        |s| {
            std::thread::sleep(Duration::from_secs(4));
            drop(s);
        },
        "pop3",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::Timeout, "{detail}");
    assert!(
        detail.contains("the greeting did not come before the deadline"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_greeting_after_the_dialogue_gave_up_still_meets_our_close() {
    // The dialogue stops a tenth of the timeout early (0.5 s of 5 s): a greeting at 4.75 s is
    // drained by the close, and the server sees our FIN, not a reset.
    let pki = Pki::new("late-greeting");
    let port = support::thread_peer(|mut s| {
        std::thread::sleep(Duration::from_millis(4750));
        let _ = s.write_all(b"220 late\r\n");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    let extra = format!("    timeout: 5s\n{}", pki.yaml("      starttls: smtp\n"));
    let target = support::target(port, &extra);
    let run = support::run(&target).await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::Timeout, "{detail}");
    let closed = run.outcome.trace.events.iter().any(|e| {
        matches!(
            e.what,
            Event::Closed {
                how: vantage::probe::Close::PeerClosed,
                discarded: 10,
            }
        )
    });
    assert!(closed, "{:?}", run.outcome.trace.events);
}

#[tokio::test]
async fn an_ldap_answer_claiming_16_mib_is_refused_unread() {
    let run = hostile(
        |mut s| {
            let mut request = [0u8; 31];
            let _ = s.read_exact(&mut request);
            // A SEQUENCE that claims 16 MiB (in four length bytes, as Active Directory writes
            // them), then nothing.
            let _ = s.write_all(b"\x30\x84\x01\x00\x00\x00");
            std::thread::sleep(Duration::from_secs(3));
        },
        "ldap",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(
        detail.contains("claims 16777216 bytes, more than 65536"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_unexpected_byte_to_the_ssl_request_is_a_mismatch() {
    let run = hostile(
        |mut s| {
            let mut request = [0u8; 8];
            let _ = s.read_exact(&mut request);
            let _ = s.write_all(b"E");
            std::thread::sleep(Duration::from_secs(3));
        },
        "postgres",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(detail.contains("byte 0x45"), "{detail}");
}

#[tokio::test]
async fn a_server_that_hangs_up_mid_dialogue_is_a_mismatch_naming_the_step() {
    let run = hostile(
        |mut s| {
            let _ = s.write_all(b"220 ftp\r\n");
            read_line(&mut s);
        },
        "ftp",
    )
    .await;
    let (reason, detail) = failed(&run);
    assert_eq!(reason, Reason::ExpectMismatch, "{detail}");
    assert!(
        detail.contains("closed the connection before the AUTH TLS answer"),
        "{detail}"
    );
}

// Through the binary: `vantage probe --starttls` and the exporter's series.

#[test]
fn probe_with_starttls_reports_the_dialogue_and_the_certificate_even_when_it_fails() {
    support::needs(&["tool:/usr/sbin/slapd"]);
    let chain = Chain::new("cli-ldap");
    let daemon = servers::slapd(Some(&chain));
    let address = format!("127.0.0.1:{}", daemon.ports[0]);
    // Trusting only the Mozilla roots, the test chain fails verification after the upgrade.
    let out = Command::new(vantage_bin())
        .args(["probe", &address, "--starttls=ldap"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{report}");
    for needle in [
        "starttls  ldap go-ahead",
        "client    31 bytes at",
        "server    resultCode 0 (success) at",
        "CN=vantage.test",
        "FAILURE tls_unknown_issuer",
    ] {
        assert!(report.contains(needle), "{needle:?} in:\n{report}");
    }

    let wrong = Command::new(vantage_bin())
        .args(["probe", &address, "--starttls=smtp", "--timeout=2s"])
        .output()
        .unwrap();
    // The wrong dialect: slapd waits for a request while we wait for a greeting.
    let report = String::from_utf8_lossy(&wrong.stdout);
    assert_eq!(wrong.status.code(), Some(1), "{report}");
    assert!(report.contains("FAILURE timeout"), "{report}");
    assert!(
        report.contains("the greeting did not come before the deadline"),
        "{report}"
    );

    let bad = Command::new(vantage_bin())
        .args(["probe", &address, "--starttls=smtps"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("one of: smtp, imap, pop3, ftp, postgres, ldap, xmpp")
    );
    drop(daemon);
    daemon_is_gone(&address);
}

fn daemon_is_gone(address: &str) {
    assert!(
        std::net::TcpStream::connect(address).is_err(),
        "the server was stopped"
    );
}

#[tokio::test]
async fn the_exporter_serves_starttls_timings_certificates_and_refusals() {
    support::needs(&["tool:/usr/sbin/slapd", "tool:promtool"]);
    let chain = Chain::new("exporter-ldap");
    let offering = servers::slapd(Some(&chain));
    let refusing = servers::slapd(None);
    let dir = TempDir::new("starttls-exporter");
    let tls = chain.pki.flow(", starttls: ldap");
    let config = dir.write(
        "exporter.yml",
        &format!(
            "targets:\n  - name: directory\n    type: tcp\n    host: 127.0.0.1\n    port: {}\n    interval: 2s\n    timeout: 1s\n{tls}\
             \x20 - name: plain-directory\n    type: tcp\n    host: 127.0.0.1\n    port: {}\n    interval: 2s\n    timeout: 1s\n{tls}",
            offering.ports[0], refusing.ports[0]
        ),
    );
    let body = tokio::task::spawn_blocking(move || scrape_when_ready(&config, "probe_success", 2))
        .await
        .unwrap();
    promtool_check(&body);
    assert_eq!(sample(&body, "probe_success", "directory"), 1.0);
    let negotiation = sample(&body, "probe_starttls_duration_seconds", "directory");
    assert!(negotiation > 0.0 && negotiation < 1.0, "{negotiation}");
    assert!(sample(&body, "probe_tls_handshake_duration_seconds", "directory") > 0.0);
    let left = sample(&body, "probe_tls_cert_expires_in_seconds", "directory");
    let expected = (chain.leaf_not_after - unix_now()) as f64;
    assert!((left - expected).abs() < 120.0, "{left} vs {expected}");
    assert_eq!(sample(&body, "probe_success", "plain-directory"), 0.0);
    assert!(
        body.contains("probe_failure_info{name=\"plain-directory\"")
            && body.lines().any(
                |l| l.starts_with("probe_failure_info{name=\"plain-directory\"")
                    && l.contains("reason=\"starttls_unsupported\"")
            ),
        "{body}"
    );
    assert!(
        !body.contains("probe_starttls_duration_seconds{name=\"plain-directory\""),
        "a refused negotiation has no duration: {body}"
    );
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn postgres_on_postgresql() {
    prove(Case {
        dialect: "postgres",
        needs: &["root", "tool:/usr/lib/postgresql/15/bin/postgres"],
        start: servers::postgres,
        port: 0,
        // PostgreSQL has no goodbye before a startup packet: close_notify and FIN are it.
        goodbye: None,
        refused_goodbye: None,
        untrusted_goodbye: None,
        untrusted_said: 1,
        polite: "connection received: host=127.0.0.1",
        // Refused with N, a client that closes before its startup packet is not logged
        // beyond its arrival.
        refused_polite: "connection received: host=127.0.0.1",
        complaints: &[
            "could not accept SSL connection",
            "incomplete startup packet",
            "FATAL",
            "ERROR",
        ],
    })
    .await;
}

#[tokio::test]
async fn smtp_on_exim() {
    prove(Case {
        dialect: "smtp",
        needs: &["tool:/usr/sbin/exim4"],
        start: servers::exim,
        port: 0,
        goodbye: Some("QUIT"),
        refused_goodbye: Some("QUIT"),
        untrusted_goodbye: Some("QUIT"),
        untrusted_said: 3,
        polite: "closed by QUIT",
        refused_polite: "closed by QUIT",
        complaints: &[
            "TLS error",
            " lost",
            "dropped",
            "rejected",
            "synchronization error",
        ],
    })
    .await;
}

#[tokio::test]
async fn xmpp_on_prosody() {
    prove(Case {
        dialect: "xmpp",
        needs: &["tool:/usr/bin/prosody"],
        start: servers::prosody,
        port: 0,
        goodbye: Some("</stream:stream>"),
        refused_goodbye: Some("</stream:stream>"),
        untrusted_goodbye: Some("</stream:stream>"),
        untrusted_said: 4,
        // Prosody closes the connection itself after answering our end of the stream
        // ("connection closed"); "closed" alone means the client dropped it first.
        polite: "\tClient disconnected: connection closed",
        refused_polite: "\tClient disconnected: connection closed",
        complaints: &["\twarn\t", "\terror\t", "Unhandled", "disconnected: closed"],
    })
    .await;
}

// A send/expect dialogue against a real server: Redis' PING.

/// `connected_clients` from Redis' `INFO clients`, asked over a connection of our own (which
/// is itself one of them).
fn redis_clients(port: u16) -> u32 {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(b"INFO clients\r\nQUIT\r\n").unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap_or_else(|| panic!("no connected_clients in {answer:?}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn redis_ping_pong_leaves_no_client_behind() {
    support::needs(&["tool:/usr/bin/redis-server"]);
    let redis = servers::redis();
    let port = redis.ports[0];
    let target = support::target(
        port,
        "    tcp: {send: \"PING\\r\\n\", expect: \"^\\\\+PONG\\r\\n\"}\n",
    );
    const PINGS: usize = 20;
    for _ in 0..PINGS {
        let run = support::run(&target).await;
        assert!(run.success(), "{}", show(&target, &run, &redis));
    }
    redis.assert_holds_nothing();
    assert_eq!(redis_clients(port), 1, "only the client asking");
    // Logged when the client closes first, with FIN: every probe did.
    redis.wait_for_log("Client closed connection", PINGS);

    let wrong = support::target(
        port,
        "    tcp: {send: \"PING\\r\\n\", expect: \"^\\\\+PANG\"}\n    timeout: 1s\n",
    );
    let run = support::run(&wrong).await;
    assert_eq!(
        run.failure().map(|f| f.reason),
        Some(Reason::ExpectMismatch),
        "{}",
        show(&wrong, &run, &redis)
    );
}

#[tokio::test]
async fn a_client_certificate_refused_after_the_handshake_fails_the_run() {
    // Under TLS 1.3 the server judges our certificate after the handshake, so its refusal
    // comes after our side is done: it must fail the run, not vanish in the close. slapd (with
    // GnuTLS) drops the connection without an alert; the WhoAmI after the handshake sees that.
    support::needs(&["tool:/usr/sbin/slapd"]);
    let chain = Chain::new("client-ldap");
    let root = chain.pki.dir.0.join("root.pem");
    let daemon = servers::slapd_demanding(Some(&chain), Some(&root));
    let port = daemon.ports[0];
    let without = support::target(port, &chain.pki.yaml("      starttls: ldap\n"));
    let run = support::run(&without).await;
    let shown = show(&without, &run, &daemon);
    let failure = run
        .failure()
        .unwrap_or_else(|| panic!("succeeded: {shown}"));
    // slapd closes without reading our WhoAmI, so the kernel may reset rather than close.
    let dropped = match failure.reason {
        Reason::ExpectMismatch => failure
            .detail
            .contains("closed the connection before the answer to WhoAmI"),
        Reason::ConnectionReset => failure.detail.contains("the answer to WhoAmI"),
        _ => false,
    };
    assert!(dropped, "{shown}");
    daemon.wait_for_log("Certificate is required", 1);

    let client = chain
        .pki
        .root
        .leaf(Leaf::server(&["vantage probe"]).client());
    let (cert, key) = client.write(&chain.pki.dir, "client");
    let with = support::target(
        port,
        &chain.pki.yaml(&format!(
            "      starttls: ldap\n      cert_file: {cert}\n      key_file: {key}\n"
        )),
    );
    let run = support::run(&with).await;
    assert!(run.success(), "{}", show(&with, &run, &daemon));
    daemon.assert_holds_nothing();
}

#[tokio::test]
async fn an_alert_that_arrives_during_the_close_fails_the_run() {
    // PostgreSQL says nothing after the handshake, so a TLS 1.3 server's verdict on our client
    // certificate (OpenSSL sends an alert) arrives while we close: it must fail the run.
    support::needs(&["root", "tool:/usr/lib/postgresql/15/bin/postgres"]);
    let chain = Chain::new("client-postgres");
    let root = chain.pki.dir.0.join("root.pem");
    let daemon = servers::postgres_checking(Some(&chain), Some(&root));
    let stranger = crate::pki::Ca::root("a CA the server does not know");
    let client = stranger.leaf(Leaf::server(&["vantage probe"]).client());
    let (cert, key) = client.write(&chain.pki.dir, "stranger");
    let target = support::target(
        daemon.ports[0],
        &chain.pki.yaml(&format!(
            "      starttls: postgres\n      cert_file: {cert}\n      key_file: {key}\n"
        )),
    );
    let run = support::run(&target).await;
    let shown = show(&target, &run, &daemon);
    let failure = run
        .failure()
        .unwrap_or_else(|| panic!("succeeded: {shown}"));
    assert_eq!(failure.reason, Reason::TlsAlert, "{shown}");
    assert!(
        failure
            .detail
            .contains("the server sent the TLS alert unknown_ca"),
        "{shown}"
    );
}
