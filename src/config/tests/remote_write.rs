//! The `remote_write` list: what it builds, and every mistake located.

use super::*;

const TARGET: &str = "targets:\n  - {name: a, type: tcp, host: 127.0.0.1, port: 1}\n";

fn with(remote: &str) -> String {
    format!("{TARGET}remote_write:\n{remote}")
}

#[test]
fn a_receiver_gets_prometheus_defaults_and_an_identity() {
    let config = ok(&with("  - url: http://127.0.0.1:9090/api/v1/write\n"));
    let [r] = config.remote_write.as_slice() else {
        panic!("one receiver: {:?}", config.remote_write)
    };
    assert_eq!(r.name, "http://127.0.0.1:9090/api/v1/write");
    assert_eq!((r.endpoint.port, r.endpoint.tls.is_none()), (9090, true));
    assert_eq!(r.endpoint.timeout, Duration::from_secs(30));
    assert_eq!(r.queue.capacity, 500_000);
    assert_eq!(r.queue.max_samples_per_send, 2_000);
    assert_eq!(r.queue.min_backoff, Duration::from_millis(30));
    assert_eq!(r.queue.max_backoff, Duration::from_secs(5));
    assert_eq!(r.job, "vantage");
    assert_eq!(
        r.instance,
        crate::shard::Shard::hostname().unwrap(),
        "the host name: the pod's, in Kubernetes"
    );
    assert_eq!(r.self_metrics_interval, Some(Duration::from_secs(15)));
    assert!(r.endpoint.headers.is_empty());
}

#[test]
fn credentials_become_one_sensitive_header_and_stay_out_of_debug_output() {
    let dir = std::env::temp_dir().join(format!("vantage-rw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "s3cr3t-token\n").unwrap();
    let yaml = with(&format!(
        "  - url: https://127.0.0.1/push?tenant=x\n    name: central\n    authorization: {{credentials_file: {}}}\n    headers: {{X-Scope-OrgID: team-a}}\n    tls: {{server_name: prom.example}}\n  - url: http://127.0.0.1/b\n    basic_auth: {{username: u, password: hunter2}}\n    self_metrics_interval: 0s\n    job: edge\n    instance: office-1\n",
        token.display()
    ));
    let config = ok(&yaml);
    let (central, b) = (&config.remote_write[0], &config.remote_write[1]);
    assert_eq!(
        central.endpoint.shown_url, "https://127.0.0.1/push",
        "no query shown"
    );
    assert!(central.endpoint.tls.is_some());
    let header = |r: &crate::config::remote_write::RemoteWrite, name: &str| {
        r.endpoint
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap().to_string())
    };
    assert_eq!(
        header(central, "authorization").unwrap(),
        "Bearer s3cr3t-token"
    );
    assert_eq!(header(central, "x-scope-orgid").unwrap(), "team-a");
    assert_eq!(header(b, "authorization").unwrap(), "Basic dTpodW50ZXIy");
    assert_eq!((b.job.as_str(), b.instance.as_str()), ("edge", "office-1"));
    assert_eq!(b.self_metrics_interval, None);
    let shown = format!("{config:?}");
    for secret in ["s3cr3t", "hunter2", "dTpodW50ZXIy", "team-a", "tenant=x"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn mistakes_are_located_at_their_key() {
    let cases: &[(&str, u64, u64, &str, &str)] = &[
        (
            "  - url: ftp://x/\n",
            4,
            10,
            "remote_write[0].url",
            "http:// or https://",
        ),
        (
            "  - url: http://u:p@127.0.0.1/\n",
            4,
            10,
            "remote_write[0].url",
            "basic_auth",
        ),
        (
            "  - url: http://0.0.0.0/\n",
            4,
            10,
            "remote_write[0].url",
            "0.0.0.0",
        ),
        (
            "  - url: http://127.0.0.1/\n    timeout: 0s\n",
            5,
            14,
            "remote_write[0].timeout",
            "longer than 0s",
        ),
        (
            "  - url: http://127.0.0.1/\n    headers: {Content-Encoding: gzip}\n",
            5,
            33,
            "remote_write[0].headers.Content-Encoding",
            "the protocol or HTTP sets it",
        ),
        (
            "  - url: http://127.0.0.1/\n    headers: {Transfer-Encoding: chunked}\n",
            5,
            34,
            "remote_write[0].headers.Transfer-Encoding",
            "sets it",
        ),
        (
            "  - url: http://127.0.0.1/\n    headers: {X-Tenant: a, x-tenant: b}\n",
            5,
            38,
            "remote_write[0].headers.x-tenant",
            "case-insensitive",
        ),
        (
            "  - url: http://127.0.0.1/\n    headers: {Authorization: x}\n",
            5,
            30,
            "remote_write[0].headers.Authorization",
            "basic_auth or authorization",
        ),
        (
            "  - url: http://127.0.0.1/\n    basic_auth: {username: u}\n",
            5,
            17,
            "remote_write[0].basic_auth.password",
            "password_file",
        ),
        (
            "  - url: http://127.0.0.1/\n    basic_auth: {username: u, password: p, password_file: f}\n",
            5,
            59,
            "remote_write[0].basic_auth.password_file",
            "not both",
        ),
        (
            "  - url: http://127.0.0.1/\n    authorization: {credentials_file: /nonexistent/token}\n",
            5,
            39,
            "remote_write[0].authorization.credentials_file",
            "cannot read /nonexistent/token",
        ),
        (
            "  - url: http://127.0.0.1/\n    basic_auth: {username: u, password: p}\n    authorization: {credentials: t}\n",
            6,
            20,
            "remote_write[0].authorization",
            "set one",
        ),
        (
            "  - url: http://127.0.0.1/\n    queue: {capacity: 0}\n",
            5,
            23,
            "remote_write[0].queue.capacity",
            "from 1 to",
        ),
        (
            "  - url: http://127.0.0.1/\n    queue: {capacity: 10, max_samples_per_send: 100}\n",
            5,
            49,
            "remote_write[0].queue.max_samples_per_send",
            "at most the capacity",
        ),
        (
            "  - url: http://127.0.0.1/\n    queue: {min_backoff: 10s, max_backoff: 1s}\n",
            5,
            44,
            "remote_write[0].queue.max_backoff",
            "at least min_backoff",
        ),
        (
            "  - url: http://127.0.0.1/\n    tls: {ca_file: x}\n",
            5,
            10,
            "remote_write[0].tls",
            "https://",
        ),
        (
            "  - url: https://127.0.0.1/\n    tls: {starttls: smtp}\n",
            5,
            21,
            "remote_write[0].tls.starttls",
            "a probe's TLS",
        ),
        (
            "  - url: https://127.0.0.1/\n    tls: {ca_file: /nonexistent/ca.pem}\n",
            5,
            20,
            "remote_write[0].tls.ca_file",
            "/nonexistent/ca.pem",
        ),
        (
            "  - url: http://127.0.0.1/\n    self_metrics_interval: 10m\n",
            5,
            28,
            "remote_write[0].self_metrics_interval",
            "from 1s to 4m",
        ),
        (
            "  - url: http://127.0.0.1/\n    instance: \"\"\n",
            5,
            15,
            "remote_write[0].instance",
            "empty",
        ),
        (
            "  - url: http://127.0.0.1/\n    queue: {capcity: 5}\n",
            5,
            13,
            "remote_write[0].queue.capcity",
            "capcity",
        ),
        (
            "  - {url: http://127.0.0.1/a, name: x}\n  - {url: http://127.0.0.1/b, name: x}\n",
            5,
            37,
            "remote_write[1].name",
            "unique",
        ),
    ];
    for &(remote, line, column, path, needle) in cases {
        let yaml = with(remote);
        let errs = errors(&yaml);
        let found = errs.iter().any(|e| {
            (e.line, e.column, e.path.as_str()) == (line, column, path)
                && e.message.contains(needle)
        });
        assert!(
            found,
            "{remote}: expected {line}:{column} {path} ~ {needle:?}, got {errs:#?}"
        );
    }
}

#[test]
fn a_changed_credential_file_changes_the_fingerprint() {
    let dir = std::env::temp_dir().join(format!("vantage-rw-fp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    let yaml = with(&format!(
        "  - url: http://127.0.0.1/\n    authorization: {{credentials_file: {}}}\n",
        token.display()
    ));
    std::fs::write(&token, "one").unwrap();
    let first = ok(&yaml).remote_write[0].fingerprint;
    assert_eq!(ok(&yaml).remote_write[0].fingerprint, first, "stable");
    std::fs::write(&token, "two").unwrap();
    assert_ne!(ok(&yaml).remote_write[0].fingerprint, first);
    // An unpopulated Secret would send an empty token, refused at every send.
    std::fs::write(&token, "\n").unwrap();
    let errs = errors(&yaml);
    assert!(
        errs.iter().any(
            |e| e.path == "remote_write[0].authorization.credentials_file"
                && e.message.ends_with("is empty")
        ),
        "{errs:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A receiver is a TLS client like a probe: it takes the key exchange from its `tls` table.
#[test]
fn a_receivers_tls_table_chooses_its_key_exchange() {
    let config = ok(&with(
        "  - url: https://127.0.0.1/a\n    tls: {key_exchange: post_quantum}\n  - url: https://127.0.0.1/b\n",
    ));
    let chosen: Vec<KeyExchange> = config
        .remote_write
        .iter()
        .map(|r| r.endpoint.tls.as_ref().unwrap().client.options.key_exchange)
        .collect();
    assert_eq!(chosen, [KeyExchange::PostQuantum, KeyExchange::Classic]);
}
