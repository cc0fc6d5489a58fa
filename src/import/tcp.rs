//! A blackbox tcp module's `tcp` table as vantage's `tcp` and `tls` tables: `query_response`
//! as `tcp.steps`, and a dialogue that upgrades with `starttls: true` as the STARTTLS dialect
//! it speaks.

use super::emit::{Map, Out};
use super::findings::Findings;
use super::node::{self, Node, Table, line};
use super::shared::{SOURCE_IP, ip_version, tls_config};
use crate::build::S;
use crate::tls::dialect::Dialect;

/// One action of a blackbox dialogue, in the order blackbox takes them within an entry:
/// the expect, then the send, then the upgrade.
#[derive(Debug, PartialEq)]
enum Action {
    Expect(String),
    Send(String),
    StartTls,
}

/// An action with where it was written.
struct Written {
    action: Action,
    line: u64,
    key: String,
}

pub fn convert(settings: &mut Table, out: &mut Map, findings: &mut Findings) {
    ip_version(settings, out, findings);
    let tls_on = settings
        .take("tls")
        .and_then(|t| node::boolean(t, &settings.key("tls"), findings))
        == Some(true);
    let tls_written = settings.take("tls_config");
    let mut tls = match tls_written {
        Some(t) => tls_config(t, &settings.key("tls_config"), findings),
        None => Map::new(),
    };
    let mut dialect = None;
    if let Some(dialogue) = settings.take("query_response") {
        let key = settings.key("query_response");
        let at = settings.line_of("query_response").unwrap_or(line(dialogue));
        if let Some(actions) = actions(dialogue, at, &key, findings) {
            let (steps, found) = steps(actions, at, &key, tls_on, findings);
            dialect = found;
            if !steps.is_empty() {
                let mut tcp = Map::new();
                tcp.set("steps", Out::Seq(steps));
                out.set("tcp", Out::Map(tcp));
            }
        }
    }
    match dialect {
        Some(dialect) => {
            let mut with = Map::new();
            with.str("starttls", dialect.as_str());
            for (k, v) in tls.pairs() {
                with.set(k, v.clone());
            }
            tls = with;
        }
        None if !tls_on => {
            if let Some(written) = tls_written
                && !tls.is_empty()
            {
                findings.skip(
                    settings.line_of("tls_config").unwrap_or(line(written)),
                    &settings.key("tls_config"),
                    "blackbox uses it only with tls: true or a starttls step, and this module \
                     has neither",
                );
            }
        }
        None => {}
    }
    if tls_on || dialect.is_some() {
        out.set("tls", Out::Map(tls));
    }
    settings.finish(findings, &[SOURCE_IP]);
}

/// The dialogue's actions, or `None` (reported) when an entry holds something vantage cannot
/// say: then none of it is converted, since a dialogue with a step missing is another one.
fn actions(
    dialogue: &S<Node>,
    at: u64,
    key: &str,
    findings: &mut Findings,
) -> Option<Vec<Written>> {
    let entries = node::list(dialogue, key, findings)?;
    let mut actions = Vec::new();
    let mut whole = true;
    for (i, entry) in entries.iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Some(mut table) = Table::of(entry, &path, findings) else {
            whole = false;
            continue;
        };
        let expect = table
            .take("expect")
            .and_then(|e| Some((node::text(e, &table.key("expect"), findings)?, line(e))));
        let send = table
            .take("send")
            .and_then(|s| Some((node::text(s, &table.key("send"), findings)?, line(s))));
        let starttls = table.take("starttls").map(|s| {
            (
                node::boolean(s, &table.key("starttls"), findings) == Some(true),
                line(s),
            )
        });
        let before = findings.items().len();
        table.finish(findings, &[]);
        whole &= findings.items().len() == before;
        let has_expect = expect.is_some();
        if let Some((pattern, at)) = expect {
            actions.push(Written {
                action: Action::Expect(pattern),
                line: at,
                key: format!("{path}.expect"),
            });
        }
        if let Some((text, at)) = send {
            let send_key = format!("{path}.send");
            // Blackbox expands `$1`, `${name}` in a send from its entry's expect match;
            // vantage sends fixed bytes.
            let Some(text) = fixed_send(&text, has_expect) else {
                findings.skip(
                    at,
                    &send_key,
                    "it sends text captured by the expect ($1, ${name}); vantage sends fixed \
                     bytes, so the dialogue is left out",
                );
                whole = false;
                continue;
            };
            if !text.is_empty() {
                // Blackbox ends every send with a newline.
                actions.push(Written {
                    action: Action::Send(format!("{text}\n")),
                    line: at,
                    key: send_key,
                });
            }
        }
        if let Some((true, at)) = starttls {
            actions.push(Written {
                action: Action::StartTls,
                line: at,
                key: format!("{path}.starttls"),
            });
        }
    }
    if !whole {
        findings.skip(
            at,
            key,
            "left out whole, for the entries named: a dialogue with a step missing is another",
        );
        return None;
    }
    Some(actions)
}

/// The send as it goes out, or `None` when it depends on the expect's match. `$$` is a
/// dollar sign.
fn fixed_send(text: &str, after_expect: bool) -> Option<String> {
    if !after_expect || !text.contains('$') {
        return Some(text.to_string());
    }
    let unescaped = text.replace("$$", "");
    (!unescaped.contains('$')).then(|| text.replace("$$", "$"))
}

/// vantage's steps for a dialogue, and the STARTTLS dialect when it upgrades. A dialogue that
/// upgrades becomes vantage's own dialect (whose negotiation it replaces); what followed the
/// upgrade is not converted, since vantage runs the dialect's goodbye there and nothing of
/// the user's.
fn steps(
    actions: Vec<Written>,
    at: u64,
    key: &str,
    tls_on: bool,
    findings: &mut Findings,
) -> (Vec<Out>, Option<Dialect>) {
    let Some(upgrade) = actions.iter().position(|a| a.action == Action::StartTls) else {
        let steps = actions.iter().filter_map(step).collect();
        return (steps, None);
    };
    let before = &actions[..upgrade];
    let Some(dialect) = detect(before) else {
        findings.skip(
            actions[upgrade].line,
            &actions[upgrade].key,
            "vantage upgrades with its own dialogue for smtp, imap, pop3, ftp, postgres, ldap \
             or xmpp, and the sends before this one are none of them; the dialogue is left out",
        );
        return (Vec::new(), None);
    };
    if tls_on {
        findings.skip(
            actions[upgrade].line,
            &actions[upgrade].key,
            "the connection is TLS from the start (tls: true); vantage cannot upgrade it again",
        );
        return (Vec::new(), None);
    }
    findings.note(
        at,
        key,
        format!(
            "the steps before starttls are vantage's {dialect} STARTTLS negotiation \
             (tls.starttls: {dialect}), which checks the protocol's own replies in place of \
             these patterns"
        ),
    );
    for after in &actions[upgrade + 1..] {
        findings.skip(
            after.line,
            &after.key,
            format!(
                "inside TLS vantage runs {dialect}'s own goodbye and no steps of yours; this \
                 step is not checked"
            ),
        );
    }
    (Vec::new(), Some(dialect))
}

/// The step for an expect or a send (an upgrade is no step: it picks the dialect).
fn step(written: &Written) -> Option<Out> {
    let mut step = Map::new();
    match &written.action {
        Action::Expect(pattern) => step.str("expect", pattern),
        Action::Send(text) => step.str("send", text),
        Action::StartTls => return None,
    }
    Some(Out::Map(step))
}

/// The dialect whose command the dialogue sends before upgrading.
fn detect(before: &[Written]) -> Option<Dialect> {
    let command = before.iter().rev().find_map(|a| match &a.action {
        Action::Send(text) => Some(text.trim().to_ascii_uppercase()),
        _ => None,
    })?;
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["STARTTLS"] => Some(Dialect::Smtp),
        [_tag, "STARTTLS"] => Some(Dialect::Imap),
        ["STLS"] => Some(Dialect::Pop3),
        ["AUTH", "TLS" | "SSL"] => Some(Dialect::Ftp),
        _ if command.contains("<STARTTLS") => Some(Dialect::Xmpp),
        _ => None,
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
