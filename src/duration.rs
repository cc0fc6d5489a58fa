//! Durations as the config file writes them: whole numbers with a unit (`500ms`, `30s`,
//! `1m30s`); and measured ones as reports print them.
//!
//! A bare number is refused with a hint: `timeout: 5` could mean seconds or milliseconds, and a
//! monitor that guesses wrong is silently useless.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Visitor};

const UNITS: [(&str, u64); 6] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 604_800 * 1_000_000_000),
];

/// Parses `500ms`, `7s`, `1m`, `1h30m`, `30d`, `2w`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: write a number with a unit, e.g. \"30s\"".to_string());
    }
    // A bare 0 is zero whatever the unit, as in Prometheus.
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bare_number_hint(text));
    }
    let invalid = || {
        format!(
            "invalid duration {text:?}: use whole numbers with a unit (ms, s, m, h, d, w), \
             e.g. \"1500ms\" or \"1m30s\""
        )
    };
    let mut nanos: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let (_, scale) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        nanos = number
            .checked_mul(*scale)
            .and_then(|n| nanos.checked_add(n))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(Duration::from_nanos(nanos))
}

fn bare_number_hint(number: &str) -> String {
    format!(
        "a duration needs a unit: write \"{number}s\" for seconds or \"{number}ms\" for milliseconds"
    )
}

/// Formats a duration the way the config writes it, so summaries can be pasted back.
pub fn format(duration: Duration) -> String {
    let mut nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    // Weeks are accepted but not written: "30d" reads better than "4w2d".
    for (name, scale) in UNITS[..5].iter().rev() {
        let scale = u128::from(*scale);
        if nanos >= scale {
            out.push_str(&format!("{}{name}", nanos / scale));
            nanos %= scale;
        }
    }
    if nanos > 0 {
        out.push_str(&format!("{nanos}ns"));
    }
    out
}

/// A duration field in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, such as \"30s\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ConfigDuration, E> {
                parse(text).map(ConfigDuration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, number: u64) -> Result<ConfigDuration, E> {
                parse(&number.to_string())
                    .map(ConfigDuration)
                    .map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, number: i64) -> Result<ConfigDuration, E> {
                Err(E::custom(bare_number_hint(&number.to_string())))
            }

            fn visit_f64<E: de::Error>(self, number: f64) -> Result<ConfigDuration, E> {
                Err(E::custom(format!(
                    "a duration needs a unit and a whole number: for {number} seconds write \"{}ms\"",
                    (number * 1000.0).round()
                )))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Milliseconds with precision that suits the magnitude: `0.213 ms`, `12.4 ms`, `1.503 s`.
pub fn timing(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.3} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit_and_compounds() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("7s"), Ok(Duration::from_secs(7)));
        assert_eq!(parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("0"), Ok(Duration::ZERO), "a bare 0, as in Prometheus");
        assert_eq!(parse("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bare_number_is_refused_with_a_unit_hint() {
        let err = parse("30").unwrap_err();
        assert!(err.contains("\"30s\""), "{err}");
    }

    #[test]
    fn unknown_units_decimals_and_garbage_are_refused() {
        for bad in ["1.5s", "5 sec", "s", "10x", "-1s", "1m30", ""] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        assert!(parse("99999999999999w").unwrap_err().contains("too long"));
    }

    #[test]
    fn format_round_trips() {
        for text in ["500ms", "7s", "1m30s", "1h", "30d", "1s500ms", "0s", "1d2h"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
        assert_eq!(format(parse("2w").unwrap()), "14d");
    }
}
