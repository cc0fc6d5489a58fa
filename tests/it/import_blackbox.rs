//! `vantage import-blackbox` on a blackbox.yml written as blackbox_exporter's example.yml writes
//! its modules, and a Prometheus config in the README's documented shape: the converted
//! config (with the allow lists of the modules the jobs used, which check-config accepts), what
//! it could not convert named with its line, and the exit codes. A converted dns module asks on
//! `/probe` what blackbox asked: its record type, over its transport, judging its rcodes.

use std::process::{Command, Output};

use crate::dns::Dnsmasq;
use crate::support::{self, TempDir, Vantage, http_get, vantage_bin};

/// Modules as blackbox_exporter's example.yml writes them (a selection, same keys).
const BLACKBOX: &str = r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      valid_http_versions: ["HTTP/1.1", "HTTP/2.0"]
      valid_status_codes: []  # Defaults to 2xx
      method: GET
      headers:
        Accept-Language: en-US
      follow_redirects: true
      fail_if_ssl: false
      fail_if_body_not_matches_regexp:
        - "Download the latest version here"
      fail_if_header_matches: # Verifies that no cookies are set
        - header: Set-Cookie
          allow_missing: true
          regexp: '.*'
      tls_config:
        insecure_skip_verify: false
      preferred_ip_protocol: "ip4" # defaults to "ip6"
      ip_protocol_fallback: false  # no fallback to "ip6"
  http_gzip:
    prober: http
    http:
      method: GET
      compression: gzip
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250-AUTH"
        - send: "QUIT\r"
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: "ip4"
  dns_tcp_example:
    prober: dns
    dns:
      transport_protocol: "tcp" # defaults to "udp"
      preferred_ip_protocol: "ip4" # defaults to "ip6"
      query_name: "www.prometheus.io"
      query_type: "A"
"#;

/// The scrape config of blackbox_exporter's README.
const PROMETHEUS: &str = r#"global:
  scrape_interval: 15s
scrape_configs:
  - job_name: 'blackbox'
    metrics_path: /probe
    params:
      module: [http_2xx]  # Look for a HTTP 200 response.
    static_configs:
      - targets:
        - http://prometheus.io    # Target to probe with http.
        - https://prometheus.io   # Target to probe with https.
        - http://example.com:8080 # Target to probe with http on port 8080.
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:9115  # The blackbox exporter's real hostname:port.
  - job_name: 'blackbox_dns'
    metrics_path: /probe
    params:
      module: [dns_tcp_example]
    static_configs:
      - targets: [127.0.0.53]
    file_sd_configs:
      - files: [more.yml]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - target_label: __address__
        replacement: 127.0.0.1:9115
"#;

fn import(args: &[&str]) -> Output {
    Command::new(vantage_bin())
        .arg("import-blackbox")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn blackboxs_example_and_readme_configs_convert_naming_what_did_not_with_its_line() {
    let dir = TempDir::new("import");
    let blackbox = dir.write("blackbox.yml", BLACKBOX);
    let prometheus = dir.write("prometheus.yml", PROMETHEUS);
    let (b, p) = (blackbox.to_str().unwrap(), prometheus.to_str().unwrap());
    let out = import(&[b, p]);
    let config = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    for expected in [
        "  http_2xx:\n    type: \"http\"\n    timeout: \"5s\"\n    ip_version: \"4\"\n",
        "    tls:\n      starttls: \"smtp\"\n",
        "  - name: \"blackbox/https://prometheus.io\"\n    module: \"http_2xx\"\n    url: \"https://prometheus.io\"\n    interval: \"15s\"\n",
        // The dns module has its whole dns table (all but the server, /probe's target)...
        "  dns_tcp_example:\n    type: \"dns\"\n    host: \"www.prometheus.io\"\n    \
         dns:\n      record_type: \"A\"\n      transport: \"tcp\"\n",
        // ... and its job's target is that module written out, with its server.
        "  - name: \"blackbox_dns/127.0.0.53\"\n    # as module dns_tcp_example, with its server\n    \
         type: \"dns\"\n    host: \"www.prometheus.io\"\n    dns:\n      \
         server: \"127.0.0.53\"\n      record_type: \"A\"\n      transport: \"tcp\"\n    interval: \"15s\"\n",
        // The modules the jobs used admit exactly their static targets on /probe.
        "    allow:\n      hosts: [\"example.com\", \"prometheus.io\"]\n      ports: [80, 443, 8080]\n",
        "    allow:\n      networks: [\"127.0.0.53/32\"]\n      ports: [53]\n",
        "  # allow: {networks: [...], hosts: [...], ports: [...]}\n  icmp:\n",
        // The job's file_sd_configs: a target source running the module at the job's schedule.
        "target_sources:\n  - name: \"blackbox_dns\"\n    # module dns_tcp_example at job blackbox_dns's \
         schedule; a group's __param_module picks another module\n    template:\n      \
         type: \"dns\"\n      host: \"www.prometheus.io\"\n",
        "      interval: \"15s\"\n      timeout: \"9s500ms\"\n    file_sd:\n      files: [\"more.yml\"]\n",
    ] {
        assert!(config.contains(expected), "{expected}\n---\n{config}");
    }
    for lost in [
        format!("{b}:15: modules.http_2xx.http.fail_if_header_matches: not converted"),
        format!("{b}:27: modules.http_gzip.http.compression: not converted"),
        format!("{b}:39: modules.smtp_starttls.tcp.query_response[6].send: not converted"),
        format!("{b}:40: modules.smtp_starttls.tcp.query_response[7].expect: not converted"),
    ] {
        assert!(stderr.contains(&lost), "{lost}\n---\n{stderr}");
        assert!(
            config.contains(&format!("#   {lost}")),
            "{lost}\n---\n{config}"
        );
    }
    assert!(
        stderr.contains(&format!(
            "{p}:26: scrape_configs.blackbox_dns.file_sd_configs: note: its files are read relative"
        )),
        "{stderr}"
    );
    // The list the job named, beside the config, as the note asks.
    dir.write("more.yml", "- targets: [127.0.0.54]\n");
    let written = dir.write("exporter.yml", &config);
    let check = Command::new(vantage_bin())
        .args(["check-config", written.to_str().unwrap()])
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{}\n---\n{config}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        summary.contains("blackbox/https://prometheus.io"),
        "{summary}"
    );
    for module in [
        "module http_2xx (http) timeout 5s, /probe may use it within its allow list",
        "module dns_tcp_example (dns www.prometheus.io) timeout 10s, /probe may use it within its allow list",
        "blackbox_dns/127.0.0.53 (dns www.prometheus.io) every 15s, timeout 9s500ms, A over tcp to 127.0.0.53:53",
        "module icmp (icmp) timeout 5s, not on /probe (no allow list)",
        "blackbox_dns/127.0.0.54 (dns www.prometheus.io) every 15s, timeout 9s500ms, A over tcp to 127.0.0.54:53",
        "target source blackbox_dns (file_sd ",
        "more.yml): targets: 1",
    ] {
        assert!(summary.contains(module), "{module}\n---\n{summary}");
    }
    let listless: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no allow list"))
        .collect();
    assert_eq!(
        listless,
        [format!(
            "{b}:24: modules: note: http_gzip, smtp_starttls, icmp have no allow list, so /probe \
             refuses them (no /probe job probes a target with them): a comment above each shows \
             the shape of one"
        )],
        "{stderr}"
    );
}

#[test]
fn a_fully_converted_config_exits_0_and_bad_input_exits_2() {
    let dir = TempDir::new("import-ok");
    let blackbox = dir.write(
        "b.yml",
        "modules:\n  tcp_connect:\n    prober: tcp\n    timeout: 5s\n",
    );
    let out = import(&[blackbox.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("# Every setting was converted.\n"));
    let missing = dir.0.join("nope.yml");
    assert_eq!(import(&[missing.to_str().unwrap()]).status.code(), Some(2));
    let not_blackbox = dir.write("p.yml", "scrape_configs: []\n");
    let out = import(&[not_blackbox.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no `modules`"));
}

/// A dns module asking MX over tcp with a rcode check, and a job probing dnsmasq with it.
const DNS_MX: &str = r#"modules:
  dns_mx:
    prober: dns
    timeout: 4s
    dns:
      query_name: "vantage.test"
      query_type: "MX"
      transport_protocol: "tcp"
      valid_rcodes: [NOERROR]
      validate_answer_rrs:
        fail_if_none_matches_regexp:
          - "MX\\t10 mail"
"#;

#[test]
fn an_imported_dns_module_asks_on_probe_what_blackbox_asked() {
    support::needs(&["tool:dnsmasq"]);
    let dnsmasq = Dnsmasq::start(&[]);
    let server = dnsmasq.server();
    let dir = TempDir::new("import-dns");
    let blackbox = dir.write("blackbox.yml", DNS_MX);
    let prometheus = dir.write(
        "prometheus.yml",
        &format!(
            "scrape_configs:\n  - job_name: dns\n    metrics_path: /probe\n    params: \
             {{module: [dns_mx]}}\n    static_configs: [{{targets: ['{server}']}}]\n    \
             relabel_configs:\n      - {{source_labels: [__address__], target_label: __param_target}}\n"
        ),
    );
    let out = import(&[blackbox.to_str().unwrap(), prometheus.to_str().unwrap()]);
    let config = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n---\n{config}");
    let written = dir.write("exporter.yml", &config);
    let check = Command::new(vantage_bin())
        .args(["check-config", written.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n---\n{config}",
        String::from_utf8_lossy(&check.stderr)
    );

    let vantage = Vantage::start(&written, &["--web.enable-probe"]);
    let path = format!("/probe?module=dns_mx&target={server}&debug=true");
    let answer = http_get(vantage.addr, &path, None).expect("an answer");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let line = |name: &str| {
        answer
            .body
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name} line in\n{}\n---\n{config}", answer.body))
            .to_string()
    };
    // What blackbox asked: MX (not vantage's default A), over tcp (not udp).
    assert!(
        line("question").ends_with("vantage.test. MX"),
        "{}",
        answer.body
    );
    assert!(
        line("server").contains(&format!("{server} over tcp")),
        "{}",
        answer.body
    );
    assert!(
        line("record").contains("MX 10 mail.vantage.test."),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("\nprobe_success 1.0\n"),
        "{}",
        answer.body
    );

    // The module judges its rcodes: a name dnsmasq does not know is NXDOMAIN, which fails.
    let retargeted = config.replace("host: \"vantage.test\"", "host: \"nothing.vantage.test\"");
    assert_ne!(retargeted, config);
    let vantage = Vantage::start(
        &dir.write("nxdomain.yml", &retargeted),
        &["--web.enable-probe"],
    );
    let answer = http_get(vantage.addr, &path, None).expect("an answer");
    assert!(answer.body.contains("NXDOMAIN"), "{}", answer.body);
    assert!(
        answer.body.contains("\nprobe_success 0.0\n"),
        "{}",
        answer.body
    );
}
