//! query_response, STARTTLS and TLS.

use super::*;
use crate::import::emit::document;
use crate::import::node::parse;

fn tcp(yaml: &str) -> (String, Vec<String>) {
    let doc = parse(yaml).unwrap();
    let mut findings = Findings::new("b.yml");
    let mut table = Table::of(&doc, "modules.t.tcp", &mut findings).unwrap();
    let mut module = Map::new();
    convert(&mut table, &mut module, &mut findings);
    let items = findings.items().iter().map(|i| i.to_string()).collect();
    (document(&module), items)
}

#[test]
fn a_dialogue_becomes_steps_with_blackboxs_newline_after_each_send() {
    let (out, items) = tcp(concat!(
        "query_response:\n",
        "  - send: \"HELO\\r\"\n",
        "  - expect: AMQP\n    send: 'cost $$5'\n",
        "tls: true\n",
        "tls_config: {insecure_skip_verify: true}\n",
    ));
    assert_eq!(
        out,
        "tcp:\n  steps:\n    - send: \"HELO\\r\\n\"\n    - expect: \"AMQP\"\n    - send: \"cost $5\\n\"\ntls:\n  verify: false\n"
    );
    assert!(items.is_empty(), "{items:?}");
}

#[test]
fn a_send_of_captured_text_leaves_the_dialogue_out_naming_both_lines() {
    let (out, items) = tcp("query_response:\n  - expect: 'PING :(.+)'\n    send: 'PONG ${1}'\n");
    assert_eq!(out, "");
    assert!(
        items[0].starts_with("b.yml:3: modules.t.tcp.query_response[0].send: not converted"),
        "{items:?}"
    );
    assert!(
        items[1]
            .starts_with("b.yml:1: modules.t.tcp.query_response: not converted: left out whole"),
        "{items:?}"
    );
}

#[test]
fn an_upgrade_after_the_smtp_command_is_the_smtp_dialect() {
    let (out, items) = tcp(concat!(
        "query_response:\n",
        "  - expect: \"^220\"\n",
        "  - send: \"EHLO prober\\r\"\n",
        "  - send: \"STARTTLS\\r\"\n",
        "  - expect: \"^220\"\n",
        "  - starttls: true\n",
        "  - send: \"QUIT\\r\"\n",
        "tls_config: {server_name: mail.example.com}\n",
    ));
    assert_eq!(
        out,
        "tls:\n  starttls: \"smtp\"\n  server_name: \"mail.example.com\"\n"
    );
    assert!(items[0].starts_with("b.yml:1: modules.t.tcp.query_response: note: the steps before starttls are vantage's smtp"), "{items:?}");
    assert!(
        items[1].starts_with(
            "b.yml:7: modules.t.tcp.query_response[5].send: not converted: inside TLS"
        ),
        "{items:?}"
    );
    assert_eq!(items.len(), 2);
}

#[test]
fn each_dialect_is_told_by_its_command() {
    let dialect = |command: &str| {
        let (out, _) = tcp(&format!(
            "query_response:\n  - send: {command:?}\n  - starttls: true\n"
        ));
        out
    };
    assert!(dialect(". STARTTLS").contains("imap"));
    assert!(dialect("a1 starttls").contains("imap"));
    assert!(dialect("STLS").contains("pop3"));
    assert!(dialect("AUTH TLS").contains("ftp"));
    assert!(dialect("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").contains("xmpp"));
    assert_eq!(dialect("UPGRADE"), "");
}

#[test]
fn tls_config_without_tls_is_named_as_unused() {
    let (out, items) = tcp("tls_config: {ca_file: /ca.pem}\nsource_ip_address: 10.0.0.1\n");
    assert_eq!(out, "");
    assert!(
        items[0].starts_with(
            "b.yml:1: modules.t.tcp.tls_config: not converted: blackbox uses it only with tls: true"
        ),
        "{items:?}"
    );
    assert!(
        items[1].starts_with("b.yml:2: modules.t.tcp.source_ip_address: not converted"),
        "{items:?}"
    );
}
