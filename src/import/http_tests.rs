//! The http table's options.

use super::*;
use crate::import::emit::document;
use crate::import::node::parse;

/// The module converted from an `http` table, and the findings as printed.
fn http(yaml: &str) -> (String, Vec<String>) {
    let doc = parse(yaml).unwrap();
    let mut findings = Findings::new("b.yml");
    let mut table = Table::of(&doc, "modules.h.http", &mut findings).unwrap();
    let mut module = Map::new();
    convert(&mut table, &mut module, &mut findings);
    let items = findings.items().iter().map(|i| i.to_string()).collect();
    (document(&module), items)
}

#[test]
fn request_and_judging_options_map_to_vantage_keys() {
    let (out, items) = http(concat!(
        "method: POST\n",
        "headers: {Content-Type: application/json}\n",
        "body: '{}'\n",
        "valid_status_codes: [200, 204]\n",
        "fail_if_body_matches_regexp: [maintenance, 'out of order']\n",
        "fail_if_body_not_matches_regexp: ['\"ok\"']\n",
        "body_size_limit: 2MB\n",
        "no_follow_redirects: true\n",
        "tls_config: {ca_file: /ca.pem}\n",
        "enable_http2: false\n",
        "fail_if_ssl: false\n",
    ));
    assert_eq!(
        out,
        concat!(
            "http:\n",
            "  method: \"POST\"\n",
            "  headers:\n    Content-Type: \"application/json\"\n",
            "  body: \"{}\"\n",
            "  valid_status_codes: [200, 204]\n",
            "  body_not_regex: \"(?:maintenance)|(?:out of order)\"\n",
            "  body_regex: \"\\\"ok\\\"\"\n",
            "  body_size_limit: 2097152\n",
            "  follow_redirects: false\n",
            "tls:\n  ca_file: \"/ca.pem\"\n",
        )
    );
    assert!(items.is_empty(), "{items:?}");
}

#[test]
fn credentials_become_the_authorization_header_with_a_note() {
    let (out, items) = http("basic_auth: {username: u, password: p}\n");
    assert!(out.contains("Authorization: \"Basic dTpw\""), "{out}");
    assert!(
        items[0].contains("basic_auth: note: sent as the Authorization header"),
        "{items:?}"
    );
    let (out, _) = http("bearer_token: t0k\n");
    assert!(out.contains("Authorization: \"Bearer t0k\""), "{out}");
    let (out, items) = http("headers: {Authorization: x}\nbearer_token: t\n");
    assert!(
        out.contains("Authorization: \"x\"") && !out.contains("Bearer"),
        "{out}"
    );
    assert!(
        items[0].contains("not converted: http.headers sets Authorization already"),
        "{items:?}"
    );
}

#[test]
fn accept_any_response_is_every_status() {
    let (out, _) = http("accept_any_response: true\n");
    assert!(out.contains("valid_status_codes: [\"100-599\"]"), "{out}");
}

#[test]
fn each_option_without_an_equivalent_is_named_with_its_line() {
    let (out, items) = http(concat!(
        "compression: gzip\n",
        "proxy_url: http://proxy:3128\n",
        "fail_if_not_ssl: true\n",
        "fail_if_header_matches:\n  - {header: Set-Cookie, regexp: '.*'}\n",
        "enable_http2: true\n",
        "valid_http_versions: [HTTP/2.0]\n",
        "fail_if_body_not_matches_regexp: [a, b]\n",
        "headers: {Connection: keep-alive}\n",
        "body_size_limit: 1GB\n",
        "oauth2: {client_id: x}\n",
        "some_future_key: 1\n",
    ));
    assert_eq!(out, "http:\n  body_regex: \"a\"\n");
    let mut keys: Vec<&str> = items
        .iter()
        .map(|i| &i[..i.find(": not converted").unwrap()])
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "b.yml:10: modules.h.http.body_size_limit",
            "b.yml:11: modules.h.http.oauth2",
            "b.yml:12: modules.h.http.some_future_key",
            "b.yml:1: modules.h.http.compression",
            "b.yml:2: modules.h.http.proxy_url",
            "b.yml:3: modules.h.http.fail_if_not_ssl",
            "b.yml:4: modules.h.http.fail_if_header_matches",
            "b.yml:6: modules.h.http.enable_http2",
            "b.yml:7: modules.h.http.valid_http_versions",
            "b.yml:8: modules.h.http.fail_if_body_not_matches_regexp[1]",
            "b.yml:9: modules.h.http.headers.Connection",
        ]
    );
}

#[test]
fn blackbox_sizes_are_base_2() {
    assert_eq!(base2_bytes("1MB"), Some(1 << 20));
    assert_eq!(base2_bytes("10KiB"), Some(10 << 10));
    assert_eq!(base2_bytes("512"), Some(512));
    assert_eq!(base2_bytes("1TB"), None);
}
