//! What every series of a target carries besides its values: the target's name and its static
//! labels, checked against Prometheus' rules, against the labels that vantage and Prometheus
//! set themselves, and against the [limits](crate::build::limits).

use std::collections::BTreeMap;

use crate::build::limits::{
    MAX_LABEL_NAME_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS, MAX_NAME_CHARS, text_problem,
};
use crate::build::{Context, S};

/// Static labels as written: values carry their place, names share the table's.
pub type RawLabels = S<BTreeMap<String, S<String>>>;

/// Label names that probe series use themselves; a static label must not shadow one.
const RESERVED_LABELS: [&str; 21] = [
    "name",
    "probe",
    "target",
    "location",
    "reason",
    "step",
    "address",
    "result",
    "stat",
    "version",
    "cipher",
    "cert_index",
    "subject",
    "issuer",
    "serial",
    "dns_names",
    "sha256",
    "rcode",
    "assertion",
    "le",
    "quantile",
];

/// Labels that Prometheus attaches to every scraped series: a series that brings its own is
/// stored with it renamed to `exported_job` or `exported_instance`, where no query looks.
const SCRAPE_LABELS: [&str; 2] = ["job", "instance"];

/// Checks a target's name, reporting what is wrong at it. Returns whether it is fine.
pub fn name(cx: &mut Context, name: &S<String>, path: &str) -> bool {
    let text = &name.value;
    let problem = if text.trim().is_empty() || text.trim() != text {
        Some("must be non-empty, without surrounding spaces".to_string())
    } else {
        text_problem(text, MAX_NAME_CHARS).map(|p| format!("the name {p}"))
    };
    if let Some(problem) = &problem {
        cx.error(&name.referenced, format!("{path}.name"), problem);
    }
    problem.is_none()
}

/// Validates static labels: Prometheus label names that do not shadow vantage's own or
/// Prometheus' own, and values within the limits.
pub fn labels(cx: &mut Context, raw: Option<&RawLabels>, path: &str) -> BTreeMap<String, String> {
    let Some(labels) = raw else {
        return BTreeMap::new();
    };
    if labels.value.len() > MAX_LABELS {
        cx.error(&labels.referenced, path, too_many(labels.value.len(), ""));
    }
    for (key, value) in &labels.value {
        // A name too long to be one is not repeated in the path, nor in the message.
        let chars = key.chars().count();
        let at = if chars > MAX_LABEL_NAME_CHARS {
            format!("{path}.<{chars} characters>")
        } else {
            format!("{path}.{key}")
        };
        if let Some(problem) = label_name_problem(key, chars) {
            cx.error(&labels.referenced, &at, problem);
        }
        if let Some(problem) = text_problem(&value.value, MAX_LABEL_VALUE_CHARS) {
            cx.error(&value.referenced, at, format!("the value {problem}"));
        }
    }
    labels
        .value
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect()
}

/// Reports a target whose own labels and the `global` ones together, `merged`, are too many;
/// each table alone was checked where it is written.
pub fn merged_count(
    cx: &mut Context,
    own: Option<&RawLabels>,
    global: usize,
    merged: usize,
    path: &str,
) {
    if let Some(own) = own
        && own.value.len() <= MAX_LABELS
        && global <= MAX_LABELS
        && merged > MAX_LABELS
    {
        cx.error(
            &own.referenced,
            path,
            too_many(merged, " with the global ones"),
        );
    }
}

fn too_many(count: usize, with: &str) -> String {
    format!(
        "{count} labels{with}; the limit is {MAX_LABELS} per target (every label multiplies \
         what Prometheus stores: put what describes many targets in the global `labels`)"
    )
}

/// What is wrong with the label name `key`, of `chars` characters, if anything.
pub fn label_name_problem(key: &str, chars: usize) -> Option<String> {
    if chars > MAX_LABEL_NAME_CHARS {
        return Some(format!(
            "a label name of {chars} characters; the limit is {MAX_LABEL_NAME_CHARS}"
        ));
    }
    let valid = key
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    let problem = if key.is_empty() || !valid {
        "is not a valid label name: use letters, digits and _, not starting with a digit".into()
    } else if key.starts_with("__") {
        "starts with __, which Prometheus reserves".into()
    } else if RESERVED_LABELS.contains(&key) {
        "is a label vantage sets itself".into()
    } else if SCRAPE_LABELS.contains(&key) {
        format!(
            "is a label Prometheus sets on every series it scrapes (naming vantage itself): \
             this one would be stored as exported_{key}; choose another name"
        )
    } else {
        return None;
    };
    Some(format!("{key:?} {problem}"))
}
