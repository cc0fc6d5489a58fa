//! What a conversion has to say besides the config it writes: the settings it could not
//! convert and the notes about those it converted with a difference, each with its file,
//! line and key path.

use std::fmt;

/// Whether a finding lost a setting or only remarks on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The setting is not in the written config.
    NotConverted,
    /// The setting was converted (or is vantage's default), with a difference worth knowing.
    Note,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub file: String,
    pub line: u64,
    /// The key path in the source file, as `modules.http_2xx.http.compression`.
    pub key: String,
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::NotConverted => "not converted",
            Kind::Note => "note",
        };
        write!(
            f,
            "{}:{}: {}: {kind}: {}",
            self.file, self.line, self.key, self.message
        )
    }
}

/// The findings of one conversion, gathered file by file.
pub struct Findings {
    file: String,
    items: Vec<Item>,
}

impl Findings {
    /// Findings about `file`, until [`Findings::set_file`] names another.
    pub fn new(file: &str) -> Self {
        Findings {
            file: file.to_string(),
            items: Vec::new(),
        }
    }

    pub fn set_file(&mut self, file: &str) {
        self.file = file.to_string();
    }

    /// A setting at `line` that is not in the output, and why.
    pub fn skip(&mut self, line: u64, key: &str, why: impl Into<String>) {
        self.push(line, key, Kind::NotConverted, why.into());
    }

    /// A remark on a setting at `line` that was converted.
    pub fn note(&mut self, line: u64, key: &str, text: impl Into<String>) {
        self.push(line, key, Kind::Note, text.into());
    }

    fn push(&mut self, line: u64, key: &str, kind: Kind, message: String) {
        self.items.push(Item {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            kind,
            message,
        });
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    pub fn into_items(self) -> Vec<Item> {
        self.items
    }
}
