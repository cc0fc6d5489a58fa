//! The mail dialects: SMTP (RFC 3207), IMAP (RFC 3501) and POP3 (RFC 2595), their checks of an
//! answer, and IMAP's reader of tagged lines (`Wire::tagged`).

use tokio::io::{AsyncRead, AsyncWrite};

use super::common::{Names, mismatch, unsupported};
use super::reply::upgrade_or_quit;
use super::wire::{Wire, said};
use crate::outcome::{Failure, quote};

/// SMTP (RFC 3207): greeting, EHLO, STARTTLS; after TLS, EHLO again and QUIT.
pub(super) async fn smtp<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
    names: &Names,
) -> Result<(), Failure> {
    let greeting = wire.reply("the greeting").await?;
    if let Err(failure) = greeting.expect(220, "the greeting") {
        // A server that refuses us (554) still waits for QUIT (RFC 5321 3.1); one that is
        // closing (421) does not.
        if greeting.code == 421 {
            return Err(failure);
        }
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    wire.send(format!("EHLO {}\r\n", names.client)).await?;
    let ehlo = wire.reply("the EHLO answer").await?;
    if let Err(failure) = ehlo.expect(250, "EHLO") {
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    let offered = ehlo.lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        let failure = unsupported("the EHLO answer does not offer STARTTLS");
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    upgrade_or_quit(wire, "STARTTLS", 220).await
}

/// IMAP (RFC 3501 6.2.1): greeting, STARTTLS; after TLS, LOGOUT.
pub(super) async fn imap<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    let greeting = wire.line("the greeting").await?;
    let status = greeting.split_whitespace().nth(1).unwrap_or_default();
    if !greeting.starts_with("* ") || !status.eq_ignore_ascii_case("OK") {
        if status.eq_ignore_ascii_case("PREAUTH") {
            // STARTTLS is only valid before authentication.
            let failure = unsupported(format!(
                "the server authenticated us at once, where STARTTLS is not allowed: {}",
                quote(greeting.as_bytes())
            ));
            return wire.goodbye("v1 LOGOUT\r\n", failure).await;
        }
        return Err(mismatch(format!(
            "the greeting is not \"* OK\": {}",
            quote(greeting.as_bytes())
        )));
    }
    wire.send("v1 STARTTLS\r\n").await?;
    let go = wire.tagged("v1", "the STARTTLS answer").await?;
    if let Err(refused) = imap_ok(&go, "STARTTLS") {
        let failure = unsupported(refused.into_detail());
        return wire.goodbye("v2 LOGOUT\r\n", failure).await;
    }
    Ok(())
}

pub(super) fn imap_ok(tagged: &str, command: &str) -> Result<(), Failure> {
    let status = tagged.split_whitespace().nth(1).unwrap_or_default();
    if status.eq_ignore_ascii_case("OK") {
        Ok(())
    } else {
        Err(mismatch(format!(
            "{command} was answered {}",
            quote(tagged.as_bytes())
        )))
    }
}

/// POP3 (RFC 2595 4): greeting, STLS; after TLS, QUIT.
pub(super) async fn pop3<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    let greeting = wire.line("the greeting").await?;
    pop3_ok(&greeting, "the greeting")?;
    wire.send("STLS\r\n").await?;
    let go = wire.line("the STLS answer").await?;
    if let Err(refused) = pop3_ok(&go, "STLS") {
        let failure = unsupported(refused.into_detail());
        return wire.goodbye("QUIT\r\n", failure).await;
    }
    Ok(())
}

pub(super) fn pop3_ok(line: &str, what: &str) -> Result<(), Failure> {
    if line == "+OK" || line.starts_with("+OK ") {
        Ok(())
    } else {
        Err(mismatch(format!(
            "{what} was answered {}",
            quote(line.as_bytes())
        )))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<'_, S> {
    /// IMAP: skips untagged lines up to the one tagged `tag`, which it returns.
    /// The run's events keep the tagged line and how many untagged ones came before it.
    pub(super) async fn tagged(&mut self, tag: &str, waiting_for: &str) -> Result<String, Failure> {
        let mut untagged = 0;
        loop {
            let line = self.unrecorded_line(waiting_for).await?;
            if line
                .strip_prefix(tag)
                .is_some_and(|rest| rest.starts_with(' '))
            {
                let before = match untagged {
                    0 => String::new(),
                    n => format!(" after {n} untagged lines"),
                };
                self.heard(format!("{}{before}", said(line.as_bytes())));
                return Ok(line);
            }
            untagged += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{negotiation, reason, text};
    use super::*;
    use crate::outcome::Reason;

    #[tokio::test]
    async fn smtp_refused_at_the_greeting_still_gets_quit_unless_the_server_is_closing() {
        let (result, sent) = negotiation(smtp, b"554 no service\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(text(&sent), "QUIT\r\n");
        let (result, sent) = negotiation(smtp, b"421 closing\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(text(&sent), "");
    }

    #[tokio::test]
    async fn smtp_reads_the_starttls_keyword_only_from_extension_lines() {
        // The first line of the EHLO answer is the server's name, not an extension.
        let script = b"220 mx\r\n250-STARTTLS greets [127.0.0.1]\r\n250 SIZE 1\r\n";
        let (result, sent) = negotiation(smtp, script).await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        assert_eq!(text(&sent), "EHLO [127.0.0.1]\r\nQUIT\r\n");
        let script = b"220 mx\r\n250-mx\r\n250 starttls\r\n220 go\r\n";
        let (result, sent) = negotiation(smtp, script).await;
        assert_eq!(result, Ok(()));
        assert_eq!(text(&sent), "EHLO [127.0.0.1]\r\nSTARTTLS\r\n");
    }

    #[tokio::test]
    async fn imap_skips_untagged_lines_and_logs_out_with_a_new_tag_after_a_refusal() {
        let script = b"* OK hello\r\n* CAPABILITY IMAP4rev1\r\nv1 NO not now\r\n";
        let (result, sent) = negotiation(async |wire, _| imap(wire).await, script).await;
        assert_eq!(reason(&result), Some(Reason::StarttlsUnsupported));
        assert_eq!(text(&sent), "v1 STARTTLS\r\nv2 LOGOUT\r\n");
        let (result, sent) = negotiation(async |wire, _| imap(wire).await, b"* BYE busy\r\n").await;
        assert_eq!(reason(&result), Some(Reason::ExpectMismatch));
        assert_eq!(
            text(&sent),
            "",
            "nothing is said to a server that said goodbye"
        );
    }
}
