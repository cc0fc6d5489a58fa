//! A blackbox http module's `http` table as vantage's `http` and `tls` tables.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::emit::{Map, Out};
use super::findings::Findings;
use super::node::{self, Node, Table, line};
use super::shared::{SOURCE_IP, ip_version, tls_config};
use crate::build::S;
use crate::probe::http::config::{MAX_BODY_SIZE_LIMIT, OWN_HEADERS};

const PROXY: &str = "vantage connects to the target itself, through no proxy";

/// Keys vantage has no counterpart for, and why.
const NOT_CONVERTED: [(&str, &str); 17] = [
    ("proxy_url", PROXY),
    ("no_proxy", PROXY),
    ("proxy_from_environment", PROXY),
    ("proxy_connect_header", PROXY),
    ("skip_resolve_phase_with_proxy", PROXY),
    ("use_proxy_dns", PROXY),
    (
        "compression",
        "vantage does not decompress bodies: body_regex and body_not_regex see the bytes as sent",
    ),
    (
        "fail_if_header_matches",
        "vantage has no checks of response headers",
    ),
    (
        "fail_if_header_not_matches",
        "vantage has no checks of response headers",
    ),
    (
        "fail_if_ssl",
        "vantage does not check whether TLS was used; an http:// URL is probed without it",
    ),
    (
        "fail_if_not_ssl",
        "vantage does not check whether TLS was used; give the target an https:// URL",
    ),
    (
        "body_file",
        "vantage sends an inline body only: copy the file's content into http.body",
    ),
    (
        "bearer_token_file",
        "vantage's header files hold the whole value: write `Bearer TOKEN` into a file and \
         name it in http.headers: {Authorization: {file: PATH}}",
    ),
    (
        "oauth2",
        "vantage fetches no OAuth2 tokens: give it one in http.headers: {Authorization: {file: PATH}}",
    ),
    (
        "fail_if_body_json_matches_cel",
        "vantage has no CEL expressions",
    ),
    (
        "fail_if_body_json_not_matches_cel",
        "vantage has no CEL expressions",
    ),
    SOURCE_IP,
];

/// Converts `settings` (a module's `http` table) onto the module `out`.
pub fn convert(settings: &mut Table, out: &mut Map, findings: &mut Findings) {
    ip_version(settings, out, findings);
    let mut http = Map::new();
    if let Some(method) = settings.take("method")
        && let Some(text) = node::text(method, &settings.key("method"), findings)
    {
        http.str("method", &text);
    }
    let headers = headers(settings, findings);
    if !headers.is_empty() {
        http.set("headers", Out::Map(headers));
    }
    if let Some(body) = settings.take("body")
        && let Some(text) = node::text(body, &settings.key("body"), findings)
        && !text.is_empty()
    {
        http.str("body", &text);
    }
    status_codes(settings, &mut http, findings);
    body_regexes(settings, &mut http, findings);
    if let Some(size) = settings.take("body_size_limit") {
        body_size_limit(size, &settings.key("body_size_limit"), &mut http, findings);
    }
    redirects(settings, &mut http, findings);
    versions(settings, findings);
    if !http.is_empty() {
        out.set("http", Out::Map(http));
    }
    if let Some(tls) = settings.take("tls_config") {
        let tls = tls_config(tls, &settings.key("tls_config"), findings);
        if !tls.is_empty() {
            out.set("tls", Out::Map(tls));
        }
    }
    settings.finish(findings, &NOT_CONVERTED);
}

/// `headers`, with `basic_auth`, `bearer_token` and `authorization` as the `Authorization`
/// header they send.
fn headers(settings: &mut Table, findings: &mut Findings) -> Map {
    let mut headers = Map::new();
    if let Some(written) = settings.take("headers")
        && let Some(mut table) = Table::of(written, &settings.key("headers"), findings)
    {
        for (name, value, _) in table.rest() {
            let key = table.key(name);
            if OWN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                findings.skip(
                    line(value),
                    &key,
                    "vantage sets this header itself (each run is one request on a new connection)",
                );
            } else if let Some(text) = node::text(value, &key, findings) {
                headers.str(name, &text);
            }
        }
    }
    let mut authorization = |value: String, at: u64, key: &str, findings: &mut Findings| {
        if headers
            .pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            findings.skip(at, key, "http.headers sets Authorization already");
        } else {
            findings.note(
                at,
                key,
                "sent as the Authorization header; vantage sends it to the URL's own origin only, \
                 never after a redirect elsewhere (a secret in exporter.yml: consider \
                 headers: {Authorization: {file: PATH}})",
            );
            headers.str("Authorization", &value);
        }
    };
    if let Some(auth) = settings.take("basic_auth")
        && let Some(mut table) = Table::of(auth, &settings.key("basic_auth"), findings)
    {
        let user = table
            .take("username")
            .and_then(|u| node::text(u, &table.key("username"), findings))
            .unwrap_or_default();
        let password = table
            .take("password")
            .and_then(|p| node::text(p, &table.key("password"), findings))
            .unwrap_or_default();
        let key = table.path.clone();
        table.finish(
            findings,
            &[(
                "password_file",
                "vantage's header files hold the whole value: write `Basic BASE64(user:password)` \
                 into a file and name it in http.headers: {Authorization: {file: PATH}}",
            )],
        );
        let credentials = STANDARD.encode(format!("{user}:{password}"));
        authorization(format!("Basic {credentials}"), line(auth), &key, findings);
    }
    if let Some(token) = settings.take("bearer_token") {
        let key = settings.key("bearer_token");
        if let Some(text) = node::text(token, &key, findings) {
            authorization(format!("Bearer {text}"), line(token), &key, findings);
        }
    }
    if let Some(auth) = settings.take("authorization")
        && let Some(mut table) = Table::of(auth, &settings.key("authorization"), findings)
    {
        let kind = table
            .take("type")
            .and_then(|t| node::text(t, &table.key("type"), findings))
            .unwrap_or_else(|| "Bearer".to_string());
        let credentials = table
            .take("credentials")
            .and_then(|c| node::text(c, &table.key("credentials"), findings));
        let key = table.path.clone();
        table.finish(
            findings,
            &[(
                "credentials_file",
                "vantage's header files hold the whole value: write `TYPE CREDENTIALS` into a \
                 file and name it in http.headers: {Authorization: {file: PATH}}",
            )],
        );
        if let Some(credentials) = credentials {
            authorization(format!("{kind} {credentials}"), line(auth), &key, findings);
        }
    }
    headers
}

/// `valid_status_codes` as written (blackbox's are single codes), or every code for
/// `accept_any_response`.
fn status_codes(settings: &mut Table, http: &mut Map, findings: &mut Findings) {
    if let Some(codes) = settings.take("valid_status_codes")
        && let Some(items) = node::list(codes, &settings.key("valid_status_codes"), findings)
    {
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.value {
                Node::Int(code) => out.push(Out::Int(code)),
                _ => findings.skip(
                    line(item),
                    &format!("{}[{i}]", settings.key("valid_status_codes")),
                    "expected a status code",
                ),
            }
        }
        if !out.is_empty() {
            http.set("valid_status_codes", Out::Seq(out));
        }
    }
    if let Some(any) = settings.take("accept_any_response")
        && node::boolean(any, &settings.key("accept_any_response"), findings) == Some(true)
    {
        if http.has("valid_status_codes") {
            findings.note(
                line(any),
                &settings.key("accept_any_response"),
                "valid_status_codes is written too, and vantage keeps those codes",
            );
        } else {
            http.set(
                "valid_status_codes",
                Out::Seq(vec![Out::Str("100-599".into())]),
            );
        }
    }
}

/// `fail_if_body_matches_regexp` (any match fails: one alternation) and
/// `fail_if_body_not_matches_regexp` (each must match: vantage checks one).
fn body_regexes(settings: &mut Table, http: &mut Map, findings: &mut Findings) {
    let key = settings.key("fail_if_body_matches_regexp");
    if let Some(node) = settings.take("fail_if_body_matches_regexp")
        && let Some(patterns) = node::texts(node, &key, findings)
        && !patterns.is_empty()
    {
        let joined = if patterns.len() == 1 {
            patterns[0].value.clone()
        } else {
            let groups: Vec<String> = patterns
                .iter()
                .map(|p| format!("(?:{})", p.value))
                .collect();
            groups.join("|")
        };
        http.str("body_not_regex", &joined);
    }
    let key = settings.key("fail_if_body_not_matches_regexp");
    if let Some(node) = settings.take("fail_if_body_not_matches_regexp")
        && let Some(patterns) = node::texts(node, &key, findings)
        && let Some((first, rest)) = patterns.split_first()
    {
        http.str("body_regex", &first.value);
        for (i, pattern) in rest.iter().enumerate() {
            findings.skip(
                pattern.referenced.line(),
                &format!("{key}[{}]", i + 1),
                "vantage checks one body_regex that must match; the first is converted",
            );
        }
    }
}

/// Blackbox's sizes are base-2 whatever the unit says (`1MB` is 1 MiB); vantage takes bytes.
fn body_size_limit(size: &S<Node>, key: &str, http: &mut Map, findings: &mut Findings) {
    let Some(text) = node::text(size, key, findings) else {
        return;
    };
    let bytes = base2_bytes(&text);
    match bytes {
        None => findings.skip(line(size), key, format!("{text:?} is not a size")),
        Some(0) => {}
        Some(n) if u64::try_from(n).is_ok_and(|n| n > MAX_BODY_SIZE_LIMIT) => findings.skip(
            line(size),
            key,
            "vantage reads at most 64MiB of a body; it keeps its default of 1MiB",
        ),
        Some(n) => http.set("body_size_limit", Out::Int(n)),
    }
}

fn base2_bytes(text: &str) -> Option<i64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let number: i64 = text[..digits].parse().ok()?;
    let shift = match text[digits..].trim() {
        "" | "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        _ => return None,
    };
    number.checked_mul(1 << shift)
}

/// `no_follow_redirects` (before 0.23) and `follow_redirects` as vantage's `follow_redirects`.
fn redirects(settings: &mut Table, http: &mut Map, findings: &mut Findings) {
    if let Some(no) = settings.take("no_follow_redirects")
        && node::boolean(no, &settings.key("no_follow_redirects"), findings) == Some(true)
    {
        http.set("follow_redirects", Out::Bool(false));
    }
    if let Some(follow) = settings.take("follow_redirects")
        && node::boolean(follow, &settings.key("follow_redirects"), findings) == Some(false)
    {
        http.set("follow_redirects", Out::Bool(false));
    }
}

/// `valid_http_versions` and `enable_http2`: vantage speaks HTTP/1.1 unless told `http2`,
/// which it offers on https URLs only, so a module (whose targets' schemes it cannot know)
/// keeps HTTP/1.1.
fn versions(settings: &mut Table, findings: &mut Findings) {
    if let Some(h2) = settings.take("enable_http2")
        && node::boolean(h2, &settings.key("enable_http2"), findings) == Some(true)
    {
        findings.skip(
            line(h2),
            &settings.key("enable_http2"),
            "vantage offers HTTP/2 on https URLs only, which a module cannot know its targets \
             have: set http.http2: true on https targets",
        );
    }
    let key = settings.key("valid_http_versions");
    if let Some(node) = settings.take("valid_http_versions")
        && let Some(versions) = node::texts(node, &key, findings)
        && !versions.is_empty()
    {
        if versions.iter().any(|v| v.value == "HTTP/1.1") {
            findings.note(
                line(node),
                &key,
                "vantage speaks HTTP/1.1, which this list accepts; it checks no version",
            );
        } else {
            findings.skip(
                line(node),
                &key,
                "vantage speaks HTTP/1.1, which this list does not accept, and checks no version",
            );
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
