//! The chain's expiry and verdict as alerts need them, against real rustls servers on loopback:
//! the verified chain apart from what was presented, `alert_before_expiry` as a warning that
//! never fails a run, and the reason a chain does not verify.

use std::time::{Duration, SystemTime};

use vantage::probe::Run;
use vantage::tls::TlsFacts;

use crate::pki::{Ca, Leaf, Pki, days};
use crate::support::{run, target, wait_for};
use crate::tls::Server;

fn facts(run: &Run) -> &TlsFacts {
    run.outcome.facts.tls().expect("TLS facts")
}

/// A server behind an intermediate that also sends a cross-signature of its root by an old root,
/// expired two days ago: what servers send for old clients, and what no verified path uses.
async fn cross_signed_server(pki: &Pki) -> u16 {
    let intermediate = pki.root.intermediate("chain intermediate", days(300));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]).valid(days(-1), days(60)));
    let old_root = Ca::root("old legacy root");
    let mut server = Server::new(&leaf, &[&intermediate]);
    server
        .chain
        .push(pki.root.cross_signed_by(&old_root, days(-2)));
    server.start().await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verified_chain_leaves_out_expired_certificates_the_server_sends_that_clients_do_not_use()
 {
    let pki = Pki::new("chain");
    let port = cross_signed_server(&pki).await;
    let run = run(&target(port, &pki.yaml("      alert_before_expiry: 30d\n"))).await;
    assert!(run.success(), "{:?}", run.failure());
    let f = facts(&run);
    assert_eq!(f.chain.len(), 3);
    let verified = f.verified.as_ref().expect("the chain verifies");
    assert_eq!(verified.presented, [0, 1]);
    assert_eq!(verified.anchor.subject, "CN=vantage chain root");
    assert_eq!(verified.anchor.presented, None);
    let root_expiry = verified
        .anchor
        .not_after
        .expect("the ca_file root's own expiry");
    assert!((root_expiry - days(3650).unix_timestamp()).abs() <= 5);
    // The presented chain's earliest expiry is the cross-signature's; the verified chain's is
    // the leaf's, and that is what alert_before_expiry judges.
    let (index, presented) = f.earliest_expiry().unwrap();
    assert_eq!(index, 2);
    assert!((presented - days(-2).unix_timestamp()).abs() <= 5);
    let expiry = f.verified_expiry().unwrap();
    assert_eq!(expiry.what, "certificate 0 (CN=vantage.test)");
    assert!((expiry.not_after - days(60).unix_timestamp()).abs() <= 5);
    assert_eq!(f.expiring(SystemTime::now()), Some(false));

    // A server that sends the root itself, in an issue of its own that expired two days ago (the
    // root's name and key, self-signed): it is on the path, as the anchor, but clients trust
    // their own copy, so its expiry is the trusted root's and raises no alarm.
    let intermediate = pki.root.intermediate("chain intermediate", days(300));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]));
    let mut server = Server::new(&leaf, &[&intermediate]);
    server
        .chain
        .push(pki.root.cross_signed_by(&pki.root, days(-2)));
    let (port, _) = server.start().await;
    let run =
        crate::support::run(&target(port, &pki.yaml("      alert_before_expiry: 30d\n"))).await;
    assert!(run.success(), "{:?}", run.failure());
    let f = facts(&run);
    let verified = f.verified.clone().expect("the chain verifies");
    assert_eq!(verified.anchor.presented, Some(2));
    assert!((0..3).all(|i| verified.contains(i)), "{verified:?}");
    let trusted = verified
        .anchor
        .not_after
        .expect("the ca_file root's expiry");
    assert!((trusted - days(3650).unix_timestamp()).abs() <= 5);
    let expiry = f.verified_expiry().unwrap();
    assert_eq!(expiry.what, "certificate 0 (CN=vantage.test)");
    assert_eq!(f.expiring(SystemTime::now()), Some(false), "{expiry:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_before_expiry_warns_and_the_run_succeeds() {
    let pki = Pki::new("chain");
    let intermediate = pki.root.intermediate("short-lived intermediate", days(10));
    let leaf = intermediate.leaf(Leaf::server(&["vantage.test"]));
    let (port, _) = Server::new(&leaf, &[&intermediate]).start().await;
    let run = run(&target(port, &pki.yaml("      alert_before_expiry: 30d\n"))).await;
    assert!(run.success(), "{:?}", run.failure());
    let f = facts(&run);
    assert_eq!(f.expiring(SystemTime::now()), Some(true));
    let warning = f.expiry_warning(SystemTime::now()).unwrap();
    assert!(
        warning.starts_with("certificate 1 (CN=short-lived intermediate) expires in ")
            && warning.ends_with(" days, inside alert_before_expiry 30d"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_serves_the_warning_the_verified_expiry_and_the_chain_error() {
    crate::support::needs(&["tool:promtool"]);
    let pki = Pki::new("chain");
    let cross = cross_signed_server(&pki).await;
    let soon = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-80), days(12)));
    let (soon, _) = Server::new(&soon, &[]).start().await;
    let expired = pki
        .root
        .leaf(Leaf::server(&["vantage.test"]).valid(days(-30), days(-1)));
    let (expired, _) = Server::new(&expired, &[]).start().await;
    let untrusted = Ca::root("unknown root").leaf(Leaf::server(&["vantage.test"]));
    let (untrusted, _) = Server::new(&untrusted, &[]).start().await;
    let root = pki.dir.0.join("root.pem").display().to_string();
    let tls = |extra: &str| format!("{{ca_file: {root}, server_name: vantage.test{extra}}}");
    let config = pki.dir.write(
        "exporter.yml",
        &format!(
            "defaults: {{interval: 1s, timeout: 800ms}}
targets:
  - {{name: cross, type: tcp, host: 127.0.0.1, port: {cross}, tls: {}}}
  - {{name: soon, type: tcp, host: 127.0.0.1, port: {soon}, tls: {}}}
  - {{name: expired, type: tcp, host: 127.0.0.1, port: {expired}, tls: {}}}
  - {{name: untrusted, type: tcp, host: 127.0.0.1, port: {untrusted}, tls: {}}}
",
            tls(""),
            tls(", alert_before_expiry: 30d"),
            tls(", verify: false, alert_before_expiry: 30d"),
            tls(", verify: false"),
        ),
    );
    let (body, warned) = tokio::task::spawn_blocking(move || {
        let vantage = crate::support::Vantage::start(&config, &[]);
        wait_for(Duration::from_secs(15), "a run of every target", || {
            crate::support::http_get(vantage.addr, "/metrics", None)
                .is_some_and(|r| r.body.matches("probe_success{").count() == 4)
        });
        let body = crate::support::http_get(vantage.addr, "/metrics", None)
            .unwrap()
            .body;
        let probe = |name: &str| {
            std::process::Command::new(crate::support::vantage_bin())
                .arg(format!("--config.file={}", config.display()))
                .arg("probe")
                .arg(format!("--name={name}"))
                .output()
                .unwrap()
        };
        (body, [probe("soon"), probe("cross")])
    })
    .await
    .unwrap();

    let series = |name: &str, target: &str| crate::support::series(&body, name, target);
    let value = |name: &str, target: &str| {
        let found = series(name, target);
        assert_eq!(found.len(), 1, "{name} of {target}:\n{body}");
        found[0].rsplit(' ').next().unwrap().parse::<f64>().unwrap()
    };
    let near = |v: f64, at: time::OffsetDateTime| (v - at.unix_timestamp() as f64).abs() < 60.0;

    // Inside alert_before_expiry: a warning, and the target is up.
    assert_eq!(value("probe_success", "soon"), 1.0, "{body}");
    assert_eq!(value("probe_tls_cert_expiring", "soon"), 1.0);
    assert!(
        series("probe_failures_total", "soon")
            .iter()
            .all(|l| !l.contains("tls_cert_expiring"))
    );
    assert!(
        series("probe_tls_cert_expiring", "cross").is_empty(),
        "no threshold, no series"
    );

    // The verified chain's expiry leaves out the cross-signature; the presented one counts it.
    assert!(near(
        value("probe_ssl_last_chain_expiry_timestamp_seconds", "cross"),
        days(60)
    ));
    assert!(near(
        value("probe_ssl_earliest_cert_expiry", "cross"),
        days(-2)
    ));
    assert!(value("probe_tls_cert_expires_in_seconds", "cross") < 0.0);
    assert!(
        series("probe_tls_chain_error_info", "cross").is_empty(),
        "{body}"
    );

    // A chain that does not verify has no verified expiry, and says why.
    for (target, reason) in [
        ("expired", "tls_cert_expired"),
        ("untrusted", "tls_unknown_issuer"),
    ] {
        assert_eq!(value("probe_success", target), 1.0, "verify: false\n{body}");
        assert!(series("probe_ssl_last_chain_expiry_timestamp_seconds", target).is_empty());
        let error = series("probe_tls_chain_error_info", target);
        assert!(
            error.len() == 1 && error[0].ends_with(&format!(",reason=\"{reason}\"}} 1")),
            "{error:?}"
        );
    }
    // An expired chain is past any threshold.
    assert_eq!(value("probe_tls_cert_expiring", "expired"), 1.0);
    crate::support::promtool_check(&body);

    let [soon, cross] = warned;
    let out = String::from_utf8_lossy(&soon.stdout);
    assert_eq!(soon.status.code(), Some(0), "{out}");
    assert!(
        out.contains("warning   certificate 0 (CN=vantage.test) expires in 1")
            && out.contains(" days, inside alert_before_expiry 30d\n"),
        "{out}"
    );
    assert!(out.contains("result    success"), "{out}");
    let out = String::from_utf8_lossy(&cross.stdout);
    assert_eq!(cross.status.code(), Some(0), "{out}");
    for expected in [
        "cert 0    CN=vantage.test\n",
        "cert 1    CN=chain intermediate\n",
        "cert 2    CN=vantage chain root (not on the verified path)\n",
        "chain     ok\n          verified cert 0 > cert 1 > root CN=vantage chain root (not sent; valid to ",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("warning"), "{out}");
}
