//! A blackbox dns module's `dns` table: the name asked becomes the module's `host`, the rest
//! the module's `dns` table (everything but the server, which is `/probe`'s target). A
//! Prometheus job's target of the module is written whole, that table and its `server`.

use super::emit::{Map, Out};
use super::findings::Findings;
use super::node::{self, Table, line};
use super::shared::{SOURCE_IP, ip_version};

/// The record types vantage asks for (`probe::dns::config::RawRecordType`).
const RECORD_TYPES: [&str; 10] = [
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV", "CAA",
];

const SECTIONS: &str = "vantage judges the answer section only";

/// Converts `settings` onto the module `out`: its `ip_version`, `host` and `dns` table. Without
/// `query_name` the module has no `host` and is left out.
pub fn convert(settings: &mut Table, out: &mut Map, findings: &mut Findings) {
    ip_version(settings, out, findings);
    match settings.take("query_name") {
        Some(name) => {
            if let Some(text) = node::text(name, &settings.key("query_name"), findings) {
                out.str("host", text.trim_end_matches('.'));
            }
        }
        None => findings.skip(
            settings.line,
            &settings.path,
            "it has no query_name, the name to ask about; the module and its targets are left out",
        ),
    }
    let mut dns = Map::new();
    record_type(settings, &mut dns, findings);
    if let Some(class) = settings.take("query_class")
        && let Some(text) = node::text(class, &settings.key("query_class"), findings)
        && !text.eq_ignore_ascii_case("IN")
    {
        findings.skip(
            line(class),
            &settings.key("query_class"),
            "vantage asks in class IN only",
        );
    }
    if let Some(transport) = settings.take("transport_protocol")
        && let Some(text) = node::text(transport, &settings.key("transport_protocol"), findings)
    {
        match text.as_str() {
            "udp" | "" => {}
            "tcp" => dns.str("transport", "tcp"),
            other => findings.skip(
                line(transport),
                &settings.key("transport_protocol"),
                format!("{other:?}: vantage asks over udp or tcp"),
            ),
        }
    }
    if let Some(codes) = settings.take("valid_rcodes")
        && let Some(codes) = node::texts(codes, &settings.key("valid_rcodes"), findings)
        && !codes.is_empty()
    {
        let codes = codes.into_iter().map(|c| Out::Str(c.value)).collect();
        dns.set("valid_rcodes", Out::Seq(codes));
    }
    if let Some(rrs) = settings.take("validate_answer_rrs")
        && let Some(table) = Table::of(rrs, &settings.key("validate_answer_rrs"), findings)
    {
        answer_rrs(table, &mut dns, findings);
    }
    if let Some(recursion) = settings.take("recursion_desired")
        && node::boolean(recursion, &settings.key("recursion_desired"), findings) == Some(false)
    {
        findings.skip(
            line(recursion),
            &settings.key("recursion_desired"),
            "vantage always asks for recursion",
        );
    }
    settings.finish(
        findings,
        &[
            SOURCE_IP,
            ("validate_authority_rrs", SECTIONS),
            ("validate_additional_rrs", SECTIONS),
            ("dns_over_tls", "vantage asks over plain udp or tcp"),
            ("tls_config", "vantage asks over plain udp or tcp"),
        ],
    );
    if !dns.is_empty() {
        out.set("dns", Out::Map(dns));
    }
}

/// `query_type`; blackbox asks `ANY` when it is not written, which vantage cannot.
fn record_type(settings: &mut Table, dns: &mut Map, findings: &mut Findings) {
    let Some(kind) = settings.take("query_type") else {
        findings.skip(
            settings.line,
            &settings.key("query_type"),
            "not written, so blackbox asks ANY, which vantage does not; vantage asks A",
        );
        return;
    };
    let Some(text) = node::text(kind, &settings.key("query_type"), findings) else {
        return;
    };
    let upper = text.to_ascii_uppercase();
    if RECORD_TYPES.contains(&upper.as_str()) {
        dns.str("record_type", &upper);
    } else {
        findings.skip(
            line(kind),
            &settings.key("query_type"),
            format!(
                "vantage asks {}, not {text}; it asks A",
                RECORD_TYPES.join(", ")
            ),
        );
    }
}

/// `validate_answer_rrs`: `fail_if_none_matches_regexp` is vantage's `expect_regex` (some
/// record must match); the other three judge every record, which vantage does not.
fn answer_rrs(mut table: Table, dns: &mut Map, findings: &mut Findings) {
    let key = table.key("fail_if_none_matches_regexp");
    if let Some(node) = table.take("fail_if_none_matches_regexp")
        && let Some(patterns) = node::texts(node, &key, findings)
        && let Some((first, rest)) = patterns.split_first()
    {
        let pattern = spaced(&first.value);
        if pattern != first.value {
            findings.note(
                first.referenced.line(),
                &format!("{key}[0]"),
                "vantage writes a record as `name TTL class type data` with spaces, where \
                 blackbox has tabs: the tabs of the pattern became spaces",
            );
        }
        dns.str("expect_regex", &pattern);
        for (i, pattern) in rest.iter().enumerate() {
            findings.skip(
                pattern.referenced.line(),
                &format!("{key}[{}]", i + 1),
                "vantage checks one expect_regex that some record must match; the first is converted",
            );
        }
    }
    let every = "vantage has no check that judges every record (only expect_regex: some record \
                 matches)";
    table.finish(
        findings,
        &[
            ("fail_if_matches_regexp", every),
            ("fail_if_all_match_regexp", every),
            ("fail_if_not_matches_regexp", every),
        ],
    );
}

/// The pattern with its tabs (a tab character, or the escape `\t`) as spaces.
fn spaced(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\t' => out.push(' '),
            '\\' => match chars.next() {
                Some('t') => out.push(' '),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::emit::document;
    use crate::import::node::parse;

    /// The module as written, its `dns` table alone, and the findings.
    fn dns(yaml: &str) -> (String, String, Vec<String>) {
        let doc = parse(yaml).unwrap();
        let mut findings = Findings::new("b.yml");
        let mut table = Table::of(&doc, "modules.d.dns", &mut findings).unwrap();
        let mut module = Map::new();
        convert(&mut table, &mut module, &mut findings);
        let items = findings.items().iter().map(|i| i.to_string()).collect();
        let dns = match module.get("dns") {
            Some(Out::Map(dns)) => document(dns),
            _ => String::new(),
        };
        (document(&module), dns, items)
    }

    #[test]
    fn the_query_becomes_the_host_and_the_rest_the_modules_dns_table() {
        let (module, _, items) = dns(
            "query_name: www.example.com.\nquery_type: aaaa\ntransport_protocol: tcp\n\
             valid_rcodes: [NOERROR, NXDOMAIN]\npreferred_ip_protocol: ip4\nip_protocol_fallback: false\n",
        );
        assert_eq!(
            module,
            "ip_version: \"4\"\nhost: \"www.example.com\"\ndns:\n  record_type: \"AAAA\"\n  \
             transport: \"tcp\"\n  valid_rcodes: [\"NOERROR\", \"NXDOMAIN\"]\n"
        );
        assert!(items.is_empty(), "{items:?}");
    }

    #[test]
    fn a_missing_query_type_is_blackboxs_any_and_not_converted() {
        let (_, table, items) = dns("query_name: example.com\n");
        assert_eq!(table, "");
        assert_eq!(
            items,
            [
                "b.yml:1: modules.d.dns.query_type: not converted: not written, so blackbox asks ANY, which vantage does not; vantage asks A"
            ]
        );
    }

    #[test]
    fn none_matches_is_expect_regex_with_spaces_for_tabs_and_the_rest_is_named() {
        let (_, table, items) = dns(concat!(
            "query_name: example.com\nquery_type: A\n",
            "validate_answer_rrs:\n",
            "  fail_if_none_matches_regexp: ['example.com.\\t300\\tIN\\tA\\t127.0.0.1']\n",
            "  fail_if_matches_regexp: ['.*10.0.0.1']\n",
            "validate_authority_rrs:\n  fail_if_matches_regexp: [x]\n",
            "recursion_desired: false\nquery_class: CH\n",
        ));
        assert_eq!(
            table,
            "record_type: \"A\"\nexpect_regex: \"example.com. 300 IN A 127.0.0.1\"\n"
        );
        let mut lines: Vec<&str> = items.iter().map(|i| &i[..i.find(": n").unwrap()]).collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "b.yml:4: modules.d.dns.validate_answer_rrs.fail_if_none_matches_regexp[0]",
                "b.yml:5: modules.d.dns.validate_answer_rrs.fail_if_matches_regexp",
                "b.yml:6: modules.d.dns.validate_authority_rrs",
                "b.yml:8: modules.d.dns.recursion_desired",
                "b.yml:9: modules.d.dns.query_class",
            ]
        );
    }
}
