//! Tests' scripted server: runs one dialect's negotiation against a peer that has queued its
//! whole side of the dialogue.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

use super::common::Names;
use super::wire::Wire;
use crate::outcome::{Failure, Reason, Trace};

/// Runs a negotiation (`talk`, a dialect's function) against a peer that has queued
/// `server_says` in full; returns the result (with the check for bytes after the go-ahead) and
/// all the client sent.
pub(super) async fn negotiation(
    talk: impl AsyncFnOnce(&mut Wire<'_, DuplexStream>, &Names) -> Result<(), Failure>,
    server_says: &[u8],
) -> (Result<(), Failure>, Vec<u8>) {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    server.write_all(server_says).await.unwrap();
    let names = Names {
        client: "[127.0.0.1]".to_string(),
        domain: "example.com".to_string(),
    };
    let mut trace = Trace::start();
    let deadline = Instant::now() + Duration::from_millis(500);
    let mut wire = Wire::new(client, deadline, &mut trace);
    let result = match talk(&mut wire, &names).await {
        Ok(()) => wire.nothing_pending(),
        Err(failure) => Err(failure),
    };
    // Dropping the wire drops our end, so that the peer reads to the end of what we sent.
    drop(wire);
    let mut sent = Vec::new();
    server.read_to_end(&mut sent).await.unwrap();
    (result, sent)
}

pub(super) fn text(sent: &[u8]) -> String {
    String::from_utf8_lossy(sent).into_owned()
}

pub(super) fn reason(result: &Result<(), Failure>) -> Option<Reason> {
    result.as_ref().err().map(|f| f.reason)
}
