//! The tcp target's config: its `tcp` table (a dialogue, a hold) as written, and the builder
//! that turns it, with the target's shared keys and its `tls` table, into a [`TcpProbe`].

use std::time::Duration;

use regex::bytes::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use super::starttls::Dialect;
use super::{Step, TcpProbe};
use crate::build::{Common, Context, S, describe, in_target, regex_message};
use crate::duration::{self, ConfigDuration};
use crate::tls::config::RawTls;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    pub send: Option<S<String>>,
    pub expect: Option<S<String>>,
    pub hold: Option<S<ConfigDuration>>,
    pub steps: Option<S<Vec<S<RawStep>>>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub send: Option<S<String>>,
    pub expect: Option<S<String>>,
}

/// A tcp target from its shared keys, its `tcp` table and its `tls` table.
pub fn build(
    cx: &mut Context,
    common: &Common,
    tcp: Option<&S<RawTcp>>,
    tls: Option<&S<RawTls>>,
) -> Option<TcpProbe> {
    let path = common.path;
    let host = cx.destination(common, "tcp targets need `host`");
    let port = match common.port {
        None => {
            cx.error(
                &common.at,
                format!("{path}.port"),
                "tcp targets need `port`",
            );
            None
        }
        Some(p) => match u16::try_from(p.value) {
            Ok(port) if port > 0 => Some(port),
            _ => {
                cx.error(
                    &p.referenced,
                    format!("{path}.port"),
                    format!("port {} is out of range 1-65535", p.value),
                );
                None
            }
        },
    };
    let (steps, hold) = match tcp {
        Some(tcp) => (
            steps(cx, &tcp.value, &format!("{path}.tcp")),
            hold(cx, &tcp.value, &format!("{path}.tcp"), common),
        ),
        None => (Some(Vec::new()), Duration::ZERO),
    };
    let tls_target = match (tls, &host) {
        (Some(tls), Some(host)) => {
            crate::tls::config::target(cx, tls, host, &format!("{path}.tls"))
                .map(|t| t.map(Box::new))
        }
        _ => Some(None),
    };
    let starttls = starttls(cx, tcp, tls, path);
    Some(TcpProbe {
        host: host?,
        port: port?,
        ip_version: common.ip_version,
        resolver: common.resolver?.map(Box::new),
        steps: steps?,
        hold,
        tls: tls_target?,
        starttls: starttls?,
    })
}

/// `tls.starttls`: only with TLS on, and without a dialogue of the user's, because the
/// dialect's own dialogue is the conversation (and ends it with QUIT or its like).
fn starttls(
    cx: &mut Context,
    tcp: Option<&S<RawTcp>>,
    tls: Option<&S<RawTls>>,
    path: &str,
) -> Option<Option<Dialect>> {
    let Some(tls) = tls else {
        return Some(None);
    };
    let Some(dialect) = &tls.value.starttls else {
        return Some(None);
    };
    let key = format!("{path}.tls.starttls");
    if tls.value.enabled == Some(false) {
        cx.error(
            &dialect.referenced,
            key,
            "starttls upgrades the connection to TLS, which `enabled: false` turns off",
        );
        return None;
    }
    if let Some(tcp) = tcp {
        let raw = &tcp.value;
        if raw.send.is_some() || raw.expect.is_some() || raw.steps.is_some() || raw.hold.is_some() {
            cx.error(
                &dialect.referenced,
                key,
                format!(
                    "starttls runs the {} dialogue itself; it cannot be combined with \
                     tcp.send, tcp.expect, tcp.steps or tcp.hold",
                    dialect.value
                ),
            );
            return None;
        }
    }
    Some(Some(dialect.value))
}

fn hold(cx: &mut Context, tcp: &RawTcp, path: &str, common: &Common) -> Duration {
    let Some(hold) = &tcp.hold else {
        return Duration::ZERO;
    };
    if hold.value.0 >= common.timeout.value {
        cx.error(
            &hold.referenced,
            format!("{path}.hold"),
            format!(
                "hold {} must be shorter than timeout {}",
                duration::format(hold.value.0),
                describe(&common.timeout, in_target)
            ),
        );
    }
    hold.value.0
}

fn steps(cx: &mut Context, tcp: &RawTcp, path: &str) -> Option<Vec<Step>> {
    if let Some(steps) = &tcp.steps
        && (tcp.send.is_some() || tcp.expect.is_some())
    {
        cx.error(
            &steps.referenced,
            format!("{path}.steps"),
            "use either `steps` or `send`/`expect`, not both",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    match &tcp.steps {
        None => {
            let shorthand = [(tcp.send.as_ref(), None), (None, tcp.expect.as_ref())];
            for (send, expect) in shorthand {
                if send.is_some() || expect.is_some() {
                    let step = step(cx, send, expect, path);
                    ok &= step.is_some();
                    out.extend(step);
                }
            }
        }
        Some(steps) => {
            for (j, step) in steps.value.iter().enumerate() {
                let step_path = format!("{path}.steps[{j}]");
                let (send, expect) = (step.value.send.as_ref(), step.value.expect.as_ref());
                if send.is_some() == expect.is_some() {
                    cx.error(
                        &step.referenced,
                        step_path,
                        "each step has exactly one of `send` or `expect`",
                    );
                    ok = false;
                } else {
                    let step = self::step(cx, send, expect, &step_path);
                    ok &= step.is_some();
                    out.extend(step);
                }
            }
        }
    }
    ok.then_some(out)
}

/// One step from its `send` or its `expect` (the caller ensures exactly one is given).
fn step(
    cx: &mut Context,
    send: Option<&S<String>>,
    expect: Option<&S<String>>,
    path: &str,
) -> Option<Step> {
    if let Some(send) = send {
        if send.value.is_empty() {
            cx.error(
                &send.referenced,
                format!("{path}.send"),
                "send must not be empty",
            );
            return None;
        }
        return Some(Step::Send(send.value.as_bytes().to_vec()));
    }
    let expect = expect?;
    match expect_regex(&expect.value) {
        Ok(regex) => Some(Step::Expect(regex)),
        Err(e) => {
            cx.error(
                &expect.referenced,
                format!("{path}.expect"),
                format!("invalid regex: {}", regex_message(&e)),
            );
            None
        }
    }
}

/// An `expect` pattern as a step matches it. Multi-line: after a partial match the rest of
/// that line is still unread, and `^250` must still find the next reply line. `\A` anchors at
/// the unread bytes' start.
pub(super) fn expect_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).multi_line(true).build()
}
