//! `valid_status_codes` entries: a status code, or an inclusive range.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An HTTP status code, or an inclusive range written `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusCodes {
    pub first: u16,
    pub last: u16,
}

impl StatusCodes {
    pub const SUCCESS: StatusCodes = StatusCodes {
        first: 200,
        last: 299,
    };

    pub fn parse(text: &str) -> Result<StatusCodes, String> {
        let code = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| format!("{t:?} is not an HTTP status code (100-599)"))
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (code(a)?, code(b)?),
            None => (code(text)?, code(text)?),
        };
        if first > last {
            return Err(format!("status range {text:?} is backwards"));
        }
        Ok(StatusCodes { first, last })
    }

    pub fn contains(self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }
}

impl fmt::Display for StatusCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl<'de> Deserialize<'de> for StatusCodes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Code(u64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Code(code) => code.to_string(),
            Written::Text(text) => text,
        };
        StatusCodes::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_accept_codes_and_ranges() {
        assert_eq!(StatusCodes::parse("200-299"), Ok(StatusCodes::SUCCESS));
        let single = StatusCodes::parse("204").unwrap();
        assert_eq!(
            single,
            StatusCodes {
                first: 204,
                last: 204
            }
        );
        assert!(single.contains(204) && !single.contains(200));
        assert!(StatusCodes::parse("299-200").is_err());
        assert!(StatusCodes::parse("700").is_err());
        assert_eq!(StatusCodes::SUCCESS.to_string(), "200-299");
        assert_eq!(single.to_string(), "204");
    }
}
