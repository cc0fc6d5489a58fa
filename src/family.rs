//! The shapes of the per-target metric families: a gauge, counter or info family with one
//! series (or several) per target, each carrying its target's labels first.
//!
//! Generic over the row, so that every probe type can render its own families from its own
//! facts while `metrics` renders the common ones from the store: the helpers know labels and
//! values, and nothing of ours. A family is written in one go, all of its series together,
//! because Prometheus needs them that way; rows keep their order, so series do too.

use std::fmt;
use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A target's labels, which start every series of it.
pub type Labels<'a> = &'a [(Arc<str>, Arc<str>)];

/// One target's row of a family: its labels and what the family's values are read from.
pub type Row<'a, T> = (Labels<'a>, T);

/// The labels of a series that belongs to no target: a `/probe` answer's, where Prometheus
/// attaches the scrape's own `instance`.
pub const UNLABELLED: Labels<'static> = &[];

/// Labels a series adds to its target's.
pub type Extra = Vec<(&'static str, String)>;

/// One gauge family: a series for every row that has a value.
pub fn gauge<T>(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, T>],
    name: &str,
    help: &str,
    value: impl Fn(&T) -> Option<f64>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, row) in rows {
        if let Some(v) = value(row) {
            ConstGauge::new(v).encode(family.encode_family(labels)?)?;
        }
    }
    Ok(())
}

/// One counter family: for every row, a series per `(label value, count)` that `values` yields.
pub fn counter<T>(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, T>],
    name: &str,
    help: &str,
    label: &'static str,
    values: impl Fn(&T) -> Vec<(&'static str, u64)>,
) -> fmt::Result {
    series(encoder, rows, name, help, MetricType::Counter, |row| {
        values(row)
            .into_iter()
            .map(|(value, count)| (vec![(label, value.to_string())], count as f64))
            .collect()
    })
}

/// One info family (value 1): for every row, a series per label set that `sets` yields.
pub fn info<T>(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, T>],
    name: &str,
    help: &str,
    sets: impl Fn(&T) -> Vec<Extra>,
) -> fmt::Result {
    series(encoder, rows, name, help, MetricType::Info, |row| {
        sets(row).into_iter().map(|labels| (labels, 1.0)).collect()
    })
}

/// One family of any type: for every row, the series that `values` yields, each with its own
/// extra labels. Counters are whole numbers, so their values convert back exactly.
pub fn series<T>(
    encoder: &mut DescriptorEncoder,
    rows: &[Row<'_, T>],
    name: &str,
    help: &str,
    metric_type: MetricType,
    values: impl Fn(&T) -> Vec<(Extra, f64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, row) in rows {
        for (extra, value) in values(row) {
            let set = (*labels, extra);
            match metric_type {
                MetricType::Info => family.encode_info(&set)?,
                MetricType::Counter => {
                    ConstCounter::new(value as u64).encode(family.encode_family(&set)?)?
                }
                _ => ConstGauge::new(value).encode(family.encode_family(&set)?)?,
            }
        }
    }
    Ok(())
}

/// The longest label value taken from what a target sent (a certificate's subject, say). A
/// server chooses what it says, and one with thousands of names must not turn every scrape
/// into megabytes.
pub const LABEL_LIMIT: usize = 1024;

/// `text`, cut at [`LABEL_LIMIT`] bytes (on a character boundary) with a note of how much more.
/// One of vantage's own families of something that is not a target (a receiver, a source):
/// name, help, type (counter or gauge), and how a thing's value is read.
pub type Own<T> = (&'static str, &'static str, MetricType, fn(&T) -> f64);

/// Each of `families`, a series for every row (its labels and its thing); nothing without rows.
pub fn own<T>(
    encoder: &mut DescriptorEncoder,
    families: &[Own<T>],
    rows: &[([(&str, String); 2], &T)],
) -> fmt::Result {
    if rows.is_empty() {
        return Ok(());
    }
    for (name, help, kind, read) in families {
        let mut family = encoder.encode_descriptor(name, help, None, *kind)?;
        for (labels, thing) in rows {
            let value = read(thing);
            let series = family.encode_family(labels)?;
            match kind {
                MetricType::Counter => ConstCounter::new(value as u64).encode(series)?,
                _ => ConstGauge::new(value).encode(series)?,
            }
        }
    }
    Ok(())
}

pub fn bounded(text: &str) -> String {
    if text.len() <= LABEL_LIMIT {
        return text.to_string();
    }
    let mut cut = LABEL_LIMIT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...({} more bytes)", &text[..cut], text.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_labels_are_bounded_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000);
        let label = bounded(&long);
        assert!(label.len() < LABEL_LIMIT + 40, "{}", label.len());
        assert!(label.ends_with("...(976 more bytes)"), "{label}");
    }
}
