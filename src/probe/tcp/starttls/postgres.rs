//! PostgreSQL: the SSLRequest and its one-byte answer.

use tokio::io::{AsyncRead, AsyncWrite};

use super::common::{mismatch, unsupported};
use super::wire::Wire;
use crate::outcome::Failure;

/// Length 8, then the SSLRequest code 1234.5679.
pub(super) const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// PostgreSQL: SSLRequest, answered by one byte, 'S' to go ahead or 'N' when TLS is off.
pub(super) async fn postgres<S: AsyncRead + AsyncWrite + Unpin>(
    wire: &mut Wire<'_, S>,
) -> Result<(), Failure> {
    wire.send(SSL_REQUEST).await?;
    let answer = wire.take(1, "the SSLRequest answer").await?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(unsupported(
            "the server answered the SSLRequest with N: TLS is off",
        )),
        other => Err(mismatch(format!(
            "the SSLRequest was answered with byte {other:#04x}, not S or N"
        ))),
    }
}
