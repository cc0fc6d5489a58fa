//! The STARTTLS dialects by name (`tls.starttls`): part of the TLS options a target writes.
//! The dialogues themselves are the tcp probe's (`probe::tcp::starttls`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The protocol whose STARTTLS command upgrades the connection (`tls.starttls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Smtp,
    Imap,
    Pop3,
    Ftp,
    Postgres,
    Ldap,
    Xmpp,
}

impl Dialect {
    pub const ALL: [Dialect; 7] = [
        Dialect::Smtp,
        Dialect::Imap,
        Dialect::Pop3,
        Dialect::Ftp,
        Dialect::Postgres,
        Dialect::Ldap,
        Dialect::Xmpp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Smtp => "smtp",
            Dialect::Imap => "imap",
            Dialect::Pop3 => "pop3",
            Dialect::Ftp => "ftp",
            Dialect::Postgres => "postgres",
            Dialect::Ldap => "ldap",
            Dialect::Xmpp => "xmpp",
        }
    }

    pub fn parse(text: &str) -> Result<Dialect, String> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Dialect::ALL.iter().map(|d| d.as_str()).collect();
                format!(
                    "unknown STARTTLS dialect {text:?}; one of: {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
