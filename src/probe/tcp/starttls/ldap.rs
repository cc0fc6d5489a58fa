//! LDAP (RFC 4511 4.14): the StartTLS extended operation, and the reader of an extended
//! operation's answer (`Wire::ldap_extended`) over the BER of `ber`.

use tokio::io::{AsyncRead, AsyncWrite};

use super::ber;
use super::common::{mismatch, unsupported};
use super::wire::{PLAINTEXT_LIMIT, Wire};
use crate::outcome::Failure;

/// LDAP (RFC 4511 4.14): the StartTLS extended operation; after TLS, a WhoAmI (RFC 4532) to
/// see the session work, then an UnbindRequest.
pub(super) async fn ldap<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    let response = wire.ldap_extended(ber::START_TLS, 1, "StartTLS").await?;
    if response.result_code != 0 {
        let failure = unsupported(format!("StartTLS was answered {response}"));
        return wire.goodbye(ber::UNBIND, failure).await;
    }
    Ok(())
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<'_, S> {
    /// Sends an extended `request` with message ID `id` and reads its answer.
    pub(super) async fn ldap_extended(
        &mut self,
        request: &[u8],
        id: u32,
        operation: &str,
    ) -> Result<ber::ExtendedResponse, Failure> {
        self.send(request).await?;
        let waiting_for = format!("the answer to {operation}");
        let message = self.ldap_message(&waiting_for).await?;
        let response = ber::parse_extended_response(&message)
            .map_err(|e| mismatch(format!("{waiting_for} is not LDAP: {e}")))?;
        self.heard(response.to_string());
        if response.message_id == 0 {
            // A notice of disconnection: the server is closing the session.
            return Err(mismatch(format!("the server disconnected: {response}")));
        }
        if response.message_id != id {
            return Err(mismatch(format!(
                "{waiting_for} has message ID {}",
                response.message_id
            )));
        }
        Ok(response)
    }

    /// One LDAPMessage: its content, after the SEQUENCE header.
    async fn ldap_message(&mut self, waiting_for: &str) -> Result<Vec<u8>, Failure> {
        let head = self.take(2, waiting_for).await?;
        if head[0] != 0x30 {
            return Err(mismatch(format!(
                "{waiting_for} is not LDAP: it starts with byte {:#04x}",
                head[0]
            )));
        }
        let length = if head[1] < 0x80 {
            u64::from(head[1])
        } else {
            let count = usize::from(head[1] & 0x7f);
            // Active Directory always writes lengths in four bytes.
            if count == 0 || count > 4 {
                return Err(mismatch(format!("{waiting_for} is not LDAP: a bad length")));
            }
            let bytes = self.take(count, waiting_for).await?;
            bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
        };
        match usize::try_from(length) {
            Ok(length) if length <= PLAINTEXT_LIMIT => self.take(length, waiting_for).await,
            _ => Err(mismatch(format!(
                "{waiting_for} claims {length} bytes, more than {PLAINTEXT_LIMIT}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::scripted::negotiation;
    use super::*;

    #[tokio::test]
    async fn ldap_takes_active_directory_four_byte_lengths() {
        // An answer in Active Directory's form, as testssl.sh's fix for it quotes one (not
        // captured here): every length in four bytes, a responseName after the diagnostic.
        let mut answer = b"\x30\x84\x00\x00\x00\x28\x02\x01\x01\x78\x84\x00\x00\x00\x1f\x0a\x01\x00\x04\x00\x04\x00\x8a\x16".to_vec();
        answer.extend_from_slice(b"1.3.6.1.4.1.1466.20037");
        let (result, sent) = negotiation(async |wire, _| ldap(wire).await, &answer).await;
        assert_eq!(result, Ok(()));
        assert_eq!(sent, ber::START_TLS);
    }
}
