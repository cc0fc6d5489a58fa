//! Where a value was written, kept small: a million raw targets live at once while a config
//! loads, each with a location per key.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_saphyr::Spanned;

/// A line and a column, 1-based; both 0 when unknown (a target from the command line).
///
/// serde-saphyr's own `Location` also carries a character span and a source id, which nothing
/// here reads: 28 bytes where this is 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    line: u32,
    column: u32,
}

impl Location {
    pub const UNKNOWN: Location = Location { line: 0, column: 0 };

    pub fn line(&self) -> u64 {
        u64::from(self.line)
    }

    pub fn column(&self) -> u64 {
        u64::from(self.column)
    }
}

impl From<serde_saphyr::Location> for Location {
    fn from(at: serde_saphyr::Location) -> Self {
        // Files are capped far below 4 GiB, so neither ever saturates in practice.
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Location {
            line: small(at.line()),
            column: small(at.column()),
        }
    }
}

/// A value with the place it was written, for errors that point at it.
///
/// Read through serde-saphyr's `Spanned`, so values and positions are exactly its, without the
/// place an alias's anchor was defined, which nothing here reads: a `Spanned` field costs 56
/// bytes more than its value, this one 8, and a million raw targets have twenty fields each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S<T> {
    pub value: T,
    pub referenced: Location,
}

impl<T> S<T> {
    pub const fn new(value: T, referenced: Location) -> Self {
        S { value, referenced }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for S<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<T>::deserialize(deserializer)?;
        Ok(S::new(spanned.value, spanned.referenced.into()))
    }
}

/// The value alone, as `Spanned` writes it: what a target's fingerprint digests.
impl<T: Serialize> Serialize for S<T> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        self.value.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Raw {
        name: S<String>,
        port: Option<S<i64>>,
    }

    #[test]
    fn values_keep_their_line_and_column_and_serialize_as_the_value_alone() {
        let raw: Raw = serde_saphyr::from_str("# a comment\nname: web\nport:   443\n").unwrap();
        assert_eq!(raw.name.value, "web");
        assert_eq!(
            (raw.name.referenced.line(), raw.name.referenced.column()),
            (2, 7)
        );
        let port = raw.port.as_ref().unwrap();
        assert_eq!(
            (port.value, port.referenced.line(), port.referenced.column()),
            (443, 3, 9)
        );
        assert_eq!(
            serde_json::to_string(&raw).unwrap(),
            r#"{"name":"web","port":443}"#
        );
        assert_eq!(
            std::mem::size_of::<S<String>>(),
            std::mem::size_of::<String>() + 8
        );
    }
}
