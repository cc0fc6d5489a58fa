//! SMTP and FTP's numbered replies: `Reply`, the reader of one (`Wire::reply`, single or
//! multi-line), and the upgrade command both send the same way (`upgrade_or_quit`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::common::{mismatch, unsupported};
use super::wire::{Wire, said};
use crate::outcome::{Failure, quote};

/// The most lines one SMTP or FTP reply may have (an EHLO answer has a dozen).
const REPLY_LINES: usize = 200;

/// An SMTP or FTP reply: its code and the text of each line.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) code: u16,
    pub(super) lines: Vec<String>,
}

impl Reply {
    pub(super) fn expect(&self, code: u16, what: &str) -> Result<(), Failure> {
        if self.code == code {
            Ok(())
        } else {
            Err(mismatch(format!("{what} was answered {}", self.quote())))
        }
    }

    pub(super) fn quote(&self) -> String {
        let first = self.lines.first().map(String::as_str).unwrap_or_default();
        quote(format!("{} {first}", self.code).as_bytes())
    }
}

/// The three-digit code that starts an SMTP or FTP reply line, and whether more lines follow.
fn reply_code(line: &str) -> Option<(u16, bool)> {
    let digits = line.get(..3)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let more = match line.as_bytes().get(3) {
        None | Some(b' ') => false,
        Some(b'-') => true,
        Some(_) => return None,
    };
    Some((digits.parse().ok()?, more))
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<'_, S> {
    /// An SMTP or FTP reply, single or multi-line. FTP's continuation lines may lack the code
    /// (RFC 959 4.2); the reply ends at the line that starts with the code and a space. The
    /// run's events keep its first line and how many followed.
    pub(super) async fn reply(&mut self, waiting_for: &str) -> Result<Reply, Failure> {
        let first = self.unrecorded_line(waiting_for).await?;
        let reply = self.rest_of_reply(&first, waiting_for).await;
        let more = match &reply {
            Ok(reply) if reply.lines.len() > 1 => {
                format!(" and {} more lines", reply.lines.len() - 1)
            }
            _ => String::new(),
        };
        self.heard(format!("{}{more}", said(first.as_bytes())));
        reply
    }

    async fn rest_of_reply(&mut self, first: &str, waiting_for: &str) -> Result<Reply, Failure> {
        let Some((code, mut more)) = reply_code(first) else {
            return Err(mismatch(format!(
                "{waiting_for} is not a reply: {}",
                quote(first.as_bytes())
            )));
        };
        let text = |line: &str| line.get(4..).unwrap_or_default().to_string();
        let mut lines = vec![text(first)];
        while more {
            if lines.len() >= REPLY_LINES {
                return Err(mismatch(format!(
                    "{waiting_for} has more than {REPLY_LINES} lines"
                )));
            }
            let line = self.unrecorded_line(waiting_for).await?;
            match reply_code(&line) {
                Some((c, continues)) if c == code => {
                    more = continues;
                    lines.push(text(&line));
                }
                _ => lines.push(line),
            }
        }
        Ok(Reply { code, lines })
    }
}

/// SMTP's STARTTLS and FTP's AUTH TLS: the command, then its go-ahead `code`, or a refusal
/// after which the session ends with QUIT.
pub(super) async fn upgrade_or_quit<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    command: &str,
    code: u16,
) -> Result<(), Failure> {
    wire.send(format!("{command}\r\n")).await?;
    let go = wire.reply(&format!("the {command} answer")).await?;
    if go.code == code {
        return Ok(());
    }
    let failure = unsupported(format!("{command} was answered {}", go.quote()));
    wire.goodbye("QUIT\r\n", failure).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes_mark_continuation() {
        assert_eq!(reply_code("250-mail.example.com"), Some((250, true)));
        assert_eq!(reply_code("250 STARTTLS"), Some((250, false)));
        assert_eq!(reply_code("221"), Some((221, false)));
        assert_eq!(reply_code("25O oops"), None);
        assert_eq!(reply_code("250_x"), None);
        assert_eq!(reply_code("* OK"), None);
    }
}
