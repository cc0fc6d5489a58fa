//! Config errors that say where: `exporter.yml:12:14: targets[3].timeout: ...`.

use std::fmt;

use serde_saphyr::{DefaultMessageFormatter, MessageFormatter};

use super::span::Location;

/// One mistake in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; 0 when the error is about the file as a whole (it cannot be read).
    pub line: u64,
    pub column: u64,
    /// The key path, such as `targets[3].tls.min_version`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(
        file: &str,
        location: &Location,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.to_string(),
            line: location.line(),
            column: location.column(),
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_string(),
            line: 0,
            column: 0,
            path: String::new(),
            message: message.into(),
        }
    }

    /// Converts a parse error, with the key path that `serde_path_to_error` tracked.
    pub fn from_parse(file: &str, err: &serde_saphyr::Error, path: &str) -> Self {
        let err = err.without_snippet();
        let location = err.location().map_or(Location::UNKNOWN, Location::from);
        // The formatter gives the bare message; ours adds file, line and column in front.
        let message: String = DefaultMessageFormatter
            .format_message(err)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        ConfigError::at(file, &location, clean_path(path), message)
    }
}

/// Removes what the parser's wrappers add to a path: the `value` segments of span-carrying
/// values (`steps.value[0].value.expect` is `steps[0].expect`), and the `?` it writes for a key
/// it could not name. Only whole segments go: a key such as `values` stays.
fn clean_path(path: &str) -> String {
    let mut out = String::new();
    for segment in path.split('.') {
        match segment.strip_prefix("value") {
            Some("") => {}
            Some(index) if index.starts_with('[') => out.push_str(index),
            _ if segment == "?" => {}
            _ => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(segment);
            }
        }
    }
    out
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every mistake found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_the_parser_wrappers() {
        assert_eq!(
            clean_path("targets[0].value.tcp.value.sned"),
            "targets[0].tcp.sned"
        );
        assert_eq!(
            clean_path("targets[0].value.tcp.value.steps.value[2].value.expect"),
            "targets[0].tcp.steps[2].expect"
        );
        assert_eq!(clean_path("targets[0].?"), "targets[0]");
        assert_eq!(clean_path("?"), "");
        assert_eq!(
            clean_path("labels.value.values"),
            "labels.values",
            "only whole segments go"
        );
    }

    #[test]
    fn display_is_file_line_column_path_message() {
        let err = ConfigError {
            file: "exporter.yml".into(),
            line: 4,
            column: 5,
            path: "targets[0].prot".into(),
            message: "unknown field".into(),
        };
        assert_eq!(
            err.to_string(),
            "exporter.yml:4:5: targets[0].prot: unknown field"
        );
        let whole = ConfigError::whole_file("missing.yml", "cannot read: gone");
        assert_eq!(whole.to_string(), "missing.yml: cannot read: gone");
    }
}
