//! The text exposition of the per-target families, written straight into chunks.
//!
//! At 100,000 targets a scrape is millions of series. prometheus-client encodes each series'
//! label set afresh (every key and value escaped and written through `fmt::Write`), and writes
//! into one String that holds the whole rendering. Here a target's labels are escaped once,
//! when its config is loaded ([`label_text`]), and copied into each of its series, numbers are written with
//! `itoa`/`dtoa` (as prometheus-client writes them, so the text is the same), and a full chunk is
//! handed to a sink (the response's stream, or a gzip stream) so that a scrape never holds the
//! whole rendering. Both exposition formats are written natively: they differ only in the
//! metadata lines (see [`Encoder::family`]).

use std::borrow::Cow;
use std::fmt;

/// A chunk is handed to the sink once it holds about this much.
pub const CHUNK: usize = 128 * 1024;

/// The type of a family, as its metadata names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Info,
}

/// A sample's value. Gauges are floats and counters whole numbers, written as prometheus-client
/// writes them (`1.0`, `0`).
#[derive(Debug, Clone, Copy)]
pub enum Value {
    Float(f64),
    Count(u64),
    /// An info series' value.
    One,
}

/// Where full chunks go; an error stops the rendering (its client has gone).
pub type Sink<'s> = &'s mut dyn FnMut(&mut String) -> fmt::Result;

/// Writes families and their samples, OpenMetrics or the classic 0.0.4 text.
pub struct Encoder<'s> {
    out: String,
    classic: bool,
    /// The current family's sample name: its own, or with `_total` (counters) or `_info`.
    sample: String,
    sink: Option<Sink<'s>>,
}

impl Encoder<'static> {
    /// An encoder that keeps everything it writes, for [`Encoder::finish`].
    pub fn whole(classic: bool) -> Encoder<'static> {
        Encoder {
            out: String::new(),
            classic,
            sample: String::new(),
            sink: None,
        }
    }
}

impl<'s> Encoder<'s> {
    /// An encoder that hands every full chunk to `sink`, which takes it (and leaves it empty,
    /// or not: what it leaves is kept).
    pub fn streaming(classic: bool, sink: Sink<'s>) -> Encoder<'s> {
        Encoder {
            out: String::with_capacity(CHUNK + CHUNK / 8),
            classic,
            sample: String::new(),
            sink: Some(sink),
        }
    }

    /// Starts a family: its HELP and TYPE lines. In OpenMetrics they name the family, and its
    /// samples add `_total` (counters) or `_info`; in the classic format they name the samples,
    /// and an info family is a gauge.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> fmt::Result {
        self.sample.clear();
        self.sample.push_str(name);
        match kind {
            Kind::Counter if !name.ends_with("_total") => self.sample.push_str("_total"),
            Kind::Info => self.sample.push_str("_info"),
            _ => {}
        }
        let (named, type_name) = match (self.classic, kind) {
            (false, Kind::Gauge) => (name, "gauge"),
            (false, Kind::Counter) => (name, "counter"),
            (false, Kind::Info) => (name, "info"),
            (true, Kind::Gauge | Kind::Info) => (self.sample.as_str(), "gauge"),
            (true, Kind::Counter) => (self.sample.as_str(), "counter"),
        };
        for (line, text) in [("# HELP ", help), ("# TYPE ", type_name)] {
            self.out.push_str(line);
            self.out.push_str(named);
            self.out.push(' ');
            self.out.push_str(text);
            self.out.push('\n');
        }
        self.spill()
    }

    /// One sample of the current family: `labels` as [`label_text`] wrote them, then `extra`
    /// labels (escaped here).
    pub fn sample<'e>(
        &mut self,
        labels: &str,
        extra: impl IntoIterator<Item = (&'e str, &'e str)>,
        value: Value,
    ) -> fmt::Result {
        let out = &mut self.out;
        out.push_str(&self.sample);
        let mut open = !labels.is_empty();
        if open {
            out.push('{');
            out.push_str(labels);
        }
        for (key, text) in extra {
            out.push(if open { ',' } else { '{' });
            open = true;
            out.push_str(key);
            out.push_str("=\"");
            escape_into(out, text);
            out.push('"');
        }
        if open {
            out.push('}');
        }
        out.push(' ');
        match value {
            Value::Float(v) => write_float(out, v),
            Value::Count(n) => out.push_str(itoa::Buffer::new().format(n)),
            Value::One => out.push('1'),
        }
        out.push('\n');
        self.spill()
    }

    /// Text that is already exposition (vantage's own metrics, encoded elsewhere).
    pub fn raw(&mut self, text: &str) -> fmt::Result {
        self.out.push_str(text);
        self.spill()
    }

    /// Hands over what is left: to the sink when streaming (and returns nothing), or returns
    /// everything written.
    pub fn finish(mut self) -> Result<String, fmt::Error> {
        match self.sink.take() {
            Some(sink) if !self.out.is_empty() => sink(&mut self.out).map(|()| String::new()),
            Some(_) => Ok(String::new()),
            None => Ok(self.out),
        }
    }

    fn spill(&mut self) -> fmt::Result {
        match &mut self.sink {
            Some(sink) if self.out.len() >= CHUNK => sink(&mut self.out),
            _ => Ok(()),
        }
    }
}

/// `v` as `dtoa` writes it. Most gauges are whole numbers (success, attempts, IP version and
/// hash, status codes), which `itoa` and `.0` write the same and in a fraction of the time.
fn write_float(out: &mut String, v: f64) {
    // A bound well inside both limits that matter: `as u64` is exact below 2^64, and dtoa
    // writes whole numbers without an exponent below 1e21.
    if v.fract() == 0.0 && v.is_sign_positive() && v < 9_007_199_254_740_992.0 {
        out.push_str(itoa::Buffer::new().format(v as u64));
        out.push_str(".0");
    } else {
        out.push_str(dtoa::Buffer::new().format(v));
    }
}

/// A target's labels as they start each of its series: `key="value",...`, values escaped.
pub fn label_text<K: AsRef<str>, V: AsRef<str>>(labels: &[(K, V)]) -> String {
    // `key="value"` and a comma before each but the first.
    let size = labels
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().len() + 4);
    let mut out = String::with_capacity(size.sum::<usize>().saturating_sub(1));
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key.as_ref());
        out.push_str("=\"");
        escape_into(&mut out, value.as_ref());
        out.push('"');
    }
    out
}

/// A label value as [`escape_into`] wrote it, up to its closing quote, unescaped; and what
/// follows the quote. `None` without a closing quote.
pub fn read_value(text: &str) -> Option<(Cow<'_, str>, &str)> {
    // Copied only when there is an escape to undo.
    let mut owned: Option<String> = None;
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let value = owned.map_or(Cow::Borrowed(&text[..i]), Cow::Owned);
                return Some((value, &text[i + 1..]));
            }
            '\\' => {
                let value = owned.get_or_insert_with(|| text[..i].to_string());
                match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                }
            }
            c => {
                if let Some(value) = &mut owned {
                    value.push(c);
                }
            }
        }
    }
    None
}

/// A label value escaped as both formats need: backslash, double quote and newline.
fn escape_into(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> String {
        label_text(&[("name", "a \"b\"\\c\nd"), ("probe", "tcp")])
    }

    #[test]
    fn writes_what_prometheus_client_writes() {
        use prometheus_client::collector::Collector;
        use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, text};
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::registry::Registry;

        #[derive(Debug)]
        struct Theirs;
        impl Collector for Theirs {
            fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
                let labels = [
                    ("name".to_string(), "a \"b\"\\c\nd".to_string()),
                    ("probe".to_string(), "tcp".to_string()),
                ];
                let extra = [("reason", "x\"y".to_string())];
                let mut g = encoder.encode_descriptor("g", "A gauge", None, MetricType::Gauge)?;
                ConstGauge::new(0.25).encode(g.encode_family(&labels)?)?;
                ConstGauge::new(1.0).encode(g.encode_family(&labels)?)?;
                let mut c =
                    encoder.encode_descriptor("c", "A counter", None, MetricType::Counter)?;
                ConstCounter::new(7u64).encode(c.encode_family(&(&labels[..], &extra[..]))?)?;
                let mut i = encoder.encode_descriptor("i", "An info", None, MetricType::Info)?;
                i.encode_info(&extra)?;
                Ok(())
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Theirs));
        let mut theirs = String::new();
        text::encode_registry(&mut theirs, &registry).unwrap();

        let mut ours = Encoder::whole(false);
        let labels = labels();
        ours.family("g", "A gauge", Kind::Gauge).unwrap();
        ours.sample(&labels, [], Value::Float(0.25)).unwrap();
        ours.sample(&labels, [], Value::Float(1.0)).unwrap();
        ours.family("c", "A counter", Kind::Counter).unwrap();
        ours.sample(&labels, [("reason", "x\"y")], Value::Count(7))
            .unwrap();
        ours.family("i", "An info", Kind::Info).unwrap();
        ours.sample("", [("reason", "x\"y")], Value::One).unwrap();
        assert_eq!(ours.finish().unwrap(), theirs);
    }

    #[test]
    fn label_values_read_back_as_they_were_written() {
        let written = [
            "plain",
            r#"say "hi", \ back\"#,
            "two\nlines=, \"x\"=y",
            "",
            "ünï\\",
            "=\"",
        ];
        let pairs: Vec<(&str, &str)> = written.iter().map(|v| ("k", *v)).collect();
        let text = label_text(&pairs);
        let mut rest = text.as_str();
        for expected in written {
            let after = rest.strip_prefix("k=\"").expect(&text);
            let (value, after) = read_value(after).expect(&text);
            assert_eq!(value, expected, "{text}");
            assert_eq!(
                matches!(value, Cow::Borrowed(_)),
                !text_needs_escape(expected)
            );
            rest = after.strip_prefix(',').unwrap_or(after);
        }
        assert_eq!(rest, "");
        assert_eq!(read_value("no closing quote"), None);
        assert_eq!(read_value("ends in an escape\\"), None);
    }

    fn text_needs_escape(value: &str) -> bool {
        value.contains(['\\', '"', '\n'])
    }

    #[test]
    fn whole_floats_are_written_as_dtoa_writes_them() {
        let mut values = vec![0.0, -0.0, 1.0, 4.0, 6.0, 200.0, 3_668_918_509.0, 0.5, -1.0];
        values.extend((0..64).map(|p| 2f64.powi(p)));
        values.extend((0..64).map(|p| 2f64.powi(p) - 1.0));
        values.extend((0..30).map(|p| 10f64.powi(p)));
        values.extend([f64::NAN, f64::INFINITY, f64::MAX, 1e-300, 123.456]);
        for v in values {
            let mut ours = String::new();
            write_float(&mut ours, v);
            assert_eq!(ours, dtoa::Buffer::new().format(v), "{v:e}");
        }
    }

    #[test]
    fn the_classic_format_names_samples_in_its_metadata() {
        let mut ours = Encoder::whole(true);
        ours.family("c", "A counter", Kind::Counter).unwrap();
        ours.sample("", [], Value::Count(1)).unwrap();
        ours.family("i", "An info", Kind::Info).unwrap();
        ours.sample("", [], Value::One).unwrap();
        let text = ours.finish().unwrap();
        let expected = "# HELP c_total A counter\n# TYPE c_total counter\nc_total 1\n\
            # HELP i_info An info\n# TYPE i_info gauge\ni_info 1\n";
        assert_eq!(text, expected);
        let openmetrics = {
            let mut om = Encoder::whole(false);
            om.family("c", "A counter", Kind::Counter).unwrap();
            om.sample("", [], Value::Count(1)).unwrap();
            om.family("i", "An info", Kind::Info).unwrap();
            om.sample("", [], Value::One).unwrap();
            om.finish().unwrap()
        };
        assert_eq!(
            crate::metrics::classic::from_openmetrics(&openmetrics),
            expected,
            "as the conversion of prometheus-client's text writes it"
        );
    }

    #[test]
    fn a_stream_gets_chunks_of_whole_lines_and_loses_nothing() {
        let mut chunks: Vec<String> = Vec::new();
        let mut sink = |chunk: &mut String| {
            chunks.push(std::mem::take(chunk));
            Ok(())
        };
        let mut ours = Encoder::streaming(false, &mut sink);
        ours.family("g", "A gauge", Kind::Gauge).unwrap();
        let labels = labels();
        let n = 20_000;
        for i in 0..n {
            ours.sample(&labels, [], Value::Count(i)).unwrap();
        }
        assert_eq!(ours.finish().unwrap(), "");
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert!(
            chunks
                .iter()
                .all(|c| c.ends_with('\n') && c.len() < 2 * CHUNK)
        );
        let all = chunks.concat();
        assert_eq!(all.lines().count(), 2 + n as usize);
        assert!(all.ends_with(&format!("}} {}\n", n - 1)));
    }

    #[test]
    fn a_sink_that_fails_stops_the_rendering() {
        let mut calls = 0;
        let mut sink = |_: &mut String| {
            calls += 1;
            Err(fmt::Error)
        };
        let mut ours = Encoder::streaming(false, &mut sink);
        ours.family("g", "A gauge", Kind::Gauge).unwrap();
        // Samples of about 10 bytes: the first full chunk is handed over, and refused, near
        // CHUNK / 10 samples in; the caller stops there.
        let failed_at = (0..100_000).position(|i| ours.sample("", [], Value::Count(i)).is_err());
        assert!(
            failed_at.is_some_and(|at| at > CHUNK / 20 && at < CHUNK / 5),
            "{failed_at:?}"
        );
        assert_eq!(
            calls, 1,
            "nothing more is handed over once the sink refused"
        );
    }
}
