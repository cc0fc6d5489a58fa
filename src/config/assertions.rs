//! The `assertions` list of a target, checked and built: one of each type at most, each with
//! the keys of its type and no others.

use std::collections::HashMap;

use super::raw::{AssertionKind, RawAssertion};
use crate::build::{Context, S};
use crate::probe::Assertion;

/// The `assertions` list: `None` after reporting errors.
pub fn assertions(
    cx: &mut Context,
    list: Option<&S<Vec<RawAssertion>>>,
    path: &str,
    tls_on: bool,
) -> Option<Vec<Assertion>> {
    let Some(list) = list else {
        return Some(Vec::new());
    };
    let mut seen: HashMap<AssertionKind, u64> = HashMap::new();
    let mut out = Vec::new();
    let mut ok = true;
    for (i, raw) in list.value.iter().enumerate() {
        let path = format!("{path}.assertions[{i}]");
        match assertion(cx, raw, &path, tls_on) {
            Some(assertion) => out.push(assertion),
            None => ok = false,
        }
        let kind = &raw.kind;
        if let Some(line) = seen.get(&kind.value) {
            cx.error(
                &kind.referenced,
                format!("{path}.type"),
                format!(
                    "a {} assertion is already given on line {line}",
                    kind.value.as_str()
                ),
            );
            ok = false;
        } else {
            seen.insert(kind.value, kind.referenced.line());
        }
    }
    ok.then_some(out)
}

fn assertion(cx: &mut Context, raw: &RawAssertion, path: &str, tls_on: bool) -> Option<Assertion> {
    let kind = raw.kind.value;
    let name = kind.as_str();
    let fields = [
        (
            "status",
            raw.status.as_ref().map(|f| f.referenced),
            AssertionKind::Connection,
        ),
        (
            "less_than",
            raw.less_than.as_ref().map(|f| f.referenced),
            AssertionKind::ResponseTime,
        ),
        (
            "greater_than",
            raw.greater_than.as_ref().map(|f| f.referenced),
            AssertionKind::CertificateExpiry,
        ),
        (
            "in",
            raw.one_of.as_ref().map(|f| f.referenced),
            AssertionKind::TlsVersion,
        ),
    ];
    let mut ok = true;
    for (field, at, owner) in fields {
        match at {
            Some(at) if owner != kind => {
                cx.error(
                    &at,
                    format!("{path}.{field}"),
                    format!("`{field}` does not apply to {name} assertions"),
                );
                ok = false;
            }
            None if owner == kind => {
                cx.error(
                    &raw.kind.referenced,
                    format!("{path}.{field}"),
                    format!("{name} assertions need `{field}`"),
                );
                ok = false;
            }
            _ => {}
        }
    }
    if !ok {
        return None;
    }
    if matches!(
        kind,
        AssertionKind::CertificateExpiry | AssertionKind::TlsVersion
    ) && !tls_on
    {
        cx.error(
            &raw.kind.referenced,
            format!("{path}.type"),
            format!(
                "a {name} assertion needs TLS: add a `tls` table to the target, or use an https URL"
            ),
        );
        return None;
    }
    match kind {
        AssertionKind::Connection => {
            let status = raw.status.as_ref()?;
            match status.value.as_str() {
                "success" => Some(Assertion::Connection { succeeds: true }),
                "failure" => Some(Assertion::Connection { succeeds: false }),
                other => {
                    cx.error(
                        &status.referenced,
                        format!("{path}.status"),
                        format!("status {other:?} is not one of success, failure"),
                    );
                    None
                }
            }
        }
        AssertionKind::ResponseTime => {
            let less_than = raw.less_than.as_ref()?;
            if less_than.value.0.is_zero() {
                cx.error(
                    &less_than.referenced,
                    format!("{path}.less_than"),
                    "must be longer than 0s",
                );
                return None;
            }
            Some(Assertion::ResponseTime {
                less_than: less_than.value.0,
            })
        }
        AssertionKind::CertificateExpiry => Some(Assertion::CertificateExpiry {
            greater_than: raw.greater_than.as_ref()?.value.0,
        }),
        AssertionKind::TlsVersion => {
            let one_of = raw.one_of.as_ref()?;
            if one_of.value.is_empty() {
                cx.error(
                    &one_of.referenced,
                    format!("{path}.in"),
                    "list at least one of TLSv1.2, TLSv1.3",
                );
                return None;
            }
            Some(Assertion::TlsVersion {
                one_of: one_of.value.clone(),
            })
        }
    }
}
