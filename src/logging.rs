//! Logs on stderr, one event per line, as logfmt (the Prometheus ecosystem's default) or JSON.
//!
//! Both formats use the keys Prometheus' own logs use, so that log pipelines built for them
//! (Loki's `logfmt` and `json` parsers, for example) read vantage's too: `ts` (UTC, RFC 3339 with
//! milliseconds), `level` (lower case) and `msg`, then the event's own fields in the order they
//! were written. A field without a value (an `Option` that is `None`, such as the address of a
//! run that failed before it had one) is left out rather than written empty. The Rust module an
//! event comes from is not written: in vantage, `target` means a probe target.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

pub fn init(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Error => LevelFilter::ERROR,
    };
    tracing_subscriber::registry()
        .with(Lines { format }.with_filter(level))
        .init();
}

/// Writes each event as one line on stderr.
struct Lines {
    format: LogFormat,
}

impl<S: Subscriber> Layer<S> for Lines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let ts = timestamp(time::OffsetDateTime::now_utc());
        let level = level_name(*event.metadata().level());
        let mut line = match self.format {
            LogFormat::Logfmt => logfmt(&ts, level, &fields),
            LogFormat::Json => json(&ts, level, &fields),
        };
        line.push('\n');
        // One write per line, so that lines from concurrent events never interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// A field's value, kept typed so that JSON can write numbers and booleans as such.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Float(f64),
    Int(i128),
    Bool(bool),
}

/// An event's message and fields, in the order they were written.
#[derive(Debug, Default)]
struct Fields {
    msg: String,
    rest: Vec<(&'static str, Value)>,
}

impl Fields {
    fn add(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Str(s)) => self.msg = s,
            (name, value) => self.rest.push((name, value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, Value::Str(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.add(field, Value::Float(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, Value::Int(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, Value::Int(value.into()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, Value::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.add(field, Value::Str(format!("{value:?}")));
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// `2026-12-06T01:41:17.563Z`, as Prometheus writes `ts`.
fn timestamp(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn logfmt(ts: &str, level: &str, fields: &Fields) -> String {
    let mut line = format!("ts={ts} level={level} msg=");
    logfmt_value(&mut line, &fields.msg);
    for (name, value) in &fields.rest {
        let _ = write!(line, " {name}=");
        match value {
            Value::Str(s) => logfmt_value(&mut line, s),
            Value::Float(f) => {
                let _ = write!(line, "{f}");
            }
            Value::Int(i) => {
                let _ = write!(line, "{i}");
            }
            Value::Bool(b) => {
                let _ = write!(line, "{b}");
            }
        }
    }
    line
}

/// A logfmt value: bare when it can be, else quoted with `"`, `\` and control characters
/// escaped, so that a detail quoting a peer's bytes can never break the line.
fn logfmt_value(line: &mut String, value: &str) {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c == ' ' || c == '=' || c == '"' || c == '\\' || c.is_control());
    if bare {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            // JSON's escape, which go-logfmt (and so Loki's logfmt parser) reads back.
            c if c.is_control() => {
                let _ = write!(line, "\\u{:04x}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

fn json(ts: &str, level: &str, fields: &Fields) -> String {
    let mut line = String::from("{");
    let push = |line: &mut String, name: &str, value: serde_json::Value| {
        if line.len() > 1 {
            line.push(',');
        }
        line.push_str(&serde_json::Value::from(name).to_string());
        line.push(':');
        line.push_str(&value.to_string());
    };
    push(&mut line, "ts", ts.into());
    push(&mut line, "level", level.into());
    push(&mut line, "msg", fields.msg.as_str().into());
    for (name, value) in &fields.rest {
        let value = match value {
            Value::Str(s) => s.as_str().into(),
            // JSON has no NaN or infinity: such a number is written as a string.
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| f.to_string().into()),
            Value::Int(i) => serde_json::Number::from_i128(*i)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| i.to_string().into()),
            Value::Bool(b) => (*b).into(),
        };
        push(&mut line, name, value);
    }
    line.push('}');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(msg: &str, rest: Vec<(&'static str, Value)>) -> Fields {
        Fields {
            msg: msg.to_string(),
            rest,
        }
    }

    #[test]
    fn logfmt_uses_prometheus_keys_and_quotes_only_what_needs_it() {
        let f = fields(
            "target is down",
            vec![
                ("name", Value::Str("web".into())),
                ("target", Value::Str("127.0.0.1:443".into())),
                ("detail", Value::Str("said \"no\"\r\n".into())),
                ("seconds", Value::Float(0.25)),
                ("attempts", Value::Int(2)),
                ("empty", Value::Str(String::new())),
            ],
        );
        assert_eq!(
            logfmt("2026-12-06T01:02:03.004Z", "warn", &f),
            "ts=2026-12-06T01:02:03.004Z level=warn msg=\"target is down\" name=web \
             target=127.0.0.1:443 detail=\"said \\\"no\\\"\\r\\n\" seconds=0.25 attempts=2 empty=\"\""
        );
    }

    #[test]
    fn logfmt_escapes_other_control_characters() {
        let mut line = String::new();
        logfmt_value(&mut line, "a\u{1b}b");
        assert_eq!(line, "\"a\\u001bb\"");
    }

    #[test]
    fn json_is_one_object_with_typed_values_in_written_order() {
        let f = fields(
            "run succeeded",
            vec![
                ("name", Value::Str("web".into())),
                ("seconds", Value::Float(0.5)),
                ("nan", Value::Float(f64::NAN)),
                ("ok", Value::Bool(true)),
            ],
        );
        assert_eq!(
            json("T", "debug", &f),
            r#"{"ts":"T","level":"debug","msg":"run succeeded","name":"web","seconds":0.5,"nan":"NaN","ok":true}"#
        );
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_000_000_123_456_789).unwrap();
        assert_eq!(timestamp(t), "2026-11-30T00:53:20.123Z");
    }
}
