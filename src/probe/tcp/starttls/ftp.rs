//! FTP (RFC 4217): AUTH TLS after the greeting, over SMTP's kind of numbered replies.

use tokio::io::{AsyncRead, AsyncWrite};

use super::reply::upgrade_or_quit;
use super::wire::Wire;
use crate::outcome::Failure;

/// FTP (RFC 4217): greeting, AUTH TLS; after TLS, QUIT.
pub(super) async fn ftp<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    let mut greeting = wire.reply("the greeting").await?;
    // "120 ready in nnn minutes" may come first (RFC 959 4.2); the byte and time bounds of the
    // dialogue bound how many.
    while (100..200).contains(&greeting.code) {
        greeting = wire.reply("the greeting").await?;
    }
    greeting.expect(220, "the greeting")?;
    upgrade_or_quit(wire, "AUTH TLS", 234).await
}

#[cfg(test)]
mod tests {
    use super::super::scripted::{negotiation, text};
    use super::*;

    #[tokio::test]
    async fn ftp_waits_past_preliminary_replies_and_reads_lines_without_codes() {
        let script =
            b"120 ready soon\r\n220-Welcome\r\n this line has no code\r\n220 ready\r\n234 go\r\n";
        let (result, sent) = negotiation(async |wire, _| ftp(wire).await, script).await;
        assert_eq!(result, Ok(()));
        assert_eq!(text(&sent), "AUTH TLS\r\n");
    }
}
