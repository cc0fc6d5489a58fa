//! The observer effect: after many runs the target holds no connection of ours, and every
//! connection it saw ended with our FIN, never a RST.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vantage::probe::Reason;

use crate::support::{run_plan, socket_states, target, wait_for};

/// How an observing server behaves before the client closes.
#[derive(Clone, Copy)]
enum Peer {
    /// Answers PING with +PONG, otherwise waits.
    Quiet,
    /// Greets first, like SMTP or FTP, whether or not the client reads it.
    Banner,
    /// Keeps talking every few milliseconds until the client closes.
    Chatty,
}

/// How each connection a server accepted ended, seen from the server.
#[derive(Default)]
struct Endings {
    accepted: AtomicUsize,
    open: AtomicUsize,
    fin: AtomicUsize,
    rst: AtomicUsize,
}

async fn observing_server(peer: Peer, endings: Arc<Endings>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            endings.accepted.fetch_add(1, Ordering::SeqCst);
            endings.open.fetch_add(1, Ordering::SeqCst);
            let endings = Arc::clone(&endings);
            tokio::spawn(async move {
                let counter = if converse(peer, stream).await {
                    &endings.fin
                } else {
                    &endings.rst
                };
                counter.fetch_add(1, Ordering::SeqCst);
                endings.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    port
}

/// Serves one connection; true if the client ended it with FIN (we read EOF), false on reset.
async fn converse(peer: Peer, mut stream: TcpStream) -> bool {
    if matches!(peer, Peer::Banner) && stream.write_all(b"220 welcome\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 1024];
    let mut chatter = 0;
    loop {
        let read = match peer {
            Peer::Chatty => {
                match tokio::time::timeout(Duration::from_millis(5), stream.read(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        chatter += 1;
                        // Bounded: a client that never closes still ends the loop.
                        if chatter > 2_000 || stream.write_all(b"* still here\r\n").await.is_err() {
                            return false;
                        }
                        continue;
                    }
                }
            }
            Peer::Quiet | Peer::Banner => stream.read(&mut buf).await,
        };
        match read {
            Ok(0) => {
                // A client can send FIN and still reset afterwards (it closed with our data in
                // flight). After a FIN, reads keep returning 0 and hide such a reset; SO_ERROR
                // does not. Close our side, let any reset arrive, then ask.
                let _ = stream.shutdown().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                return matches!(SockRef::from(&stream).take_error(), Ok(None));
            }
            Ok(n) => {
                if buf[..n].starts_with(b"PING") && stream.write_all(b"+PONG\r\n").await.is_err() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_200_runs_the_target_holds_nothing_and_saw_only_fins() {
    let quiet = Arc::new(Endings::default());
    let banner = Arc::new(Endings::default());
    let chatty = Arc::new(Endings::default());
    let quiet_port = observing_server(Peer::Quiet, Arc::clone(&quiet)).await;
    let banner_port = observing_server(Peer::Banner, Arc::clone(&banner)).await;
    let chatty_port = observing_server(Peer::Chatty, Arc::clone(&chatty)).await;

    // (port, extra config, expected reason or None for success, how many runs)
    let plan = [
        (quiet_port, "", None, 50),
        (
            quiet_port,
            "    tcp: {send: \"PING\\r\\n\", expect: \"\\\\+PONG\"}\n",
            None,
            50,
        ),
        // The banner is never read by a bare connect: closing must drain it, not reset.
        (banner_port, "", None, 50),
        (chatty_port, "    tcp: {hold: 30ms}\n", None, 25),
        // Failed runs close gently too.
        (
            banner_port,
            "    timeout: 300ms\n    tcp: {expect: \"^250\"}\n",
            Some(Reason::ExpectMismatch),
            25,
        ),
    ];
    run_plan(
        plan.into_iter()
            .map(|(port, extra, expected, count)| (target(port, extra), expected, count))
            .collect(),
    )
    .await;

    let all = [
        (&quiet, quiet_port),
        (&banner, banner_port),
        (&chatty, chatty_port),
    ];
    wait_for(
        Duration::from_secs(10),
        "the servers to see every connection end",
        || all.iter().all(|(e, _)| e.open.load(Ordering::SeqCst) == 0),
    );
    let accepted: usize = all
        .iter()
        .map(|(e, _)| e.accepted.load(Ordering::SeqCst))
        .sum();
    let fins: usize = all.iter().map(|(e, _)| e.fin.load(Ordering::SeqCst)).sum();
    let resets: usize = all.iter().map(|(e, _)| e.rst.load(Ordering::SeqCst)).sum();
    assert_eq!(accepted, 200);
    assert_eq!(resets, 0, "connections that ended with a reset");
    assert_eq!(fins, 200);

    // The kernel agrees: nothing is left but the listeners and our own TIME_WAITs.
    for (_, port) in all {
        wait_for(
            Duration::from_secs(10),
            "only LISTEN and TIME_WAIT to remain",
            || {
                socket_states(port)
                    .iter()
                    .all(|s| matches!(*s, "LISTEN" | "TIME_WAIT"))
            },
        );
        assert!(
            socket_states(port).contains("LISTEN"),
            "the table was read for the right port"
        );
    }
}

fn assert_one_reset(endings: &Endings) {
    wait_for(
        Duration::from_secs(5),
        "the server to see the reset",
        || endings.rst.load(Ordering::SeqCst) == 1,
    );
    assert_eq!(endings.fin.load(Ordering::SeqCst), 0);
}

/// The detector above must be able to fail: an aborting client is seen as a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observing_server_detects_a_client_that_resets() {
    let endings = Arc::new(Endings::default());
    let port = observing_server(Peer::Quiet, Arc::clone(&endings)).await;
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
    assert_one_reset(&endings);
}

/// And a client that closes with the banner unread (what a naive TCP check does) resets too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_with_unread_data_is_a_reset_which_is_why_vantage_drains() {
    let endings = Arc::new(Endings::default());
    let port = observing_server(Peer::Banner, Arc::clone(&endings)).await;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut first = [0u8; 1];
    stream.read_exact(&mut first).await.unwrap(); // the banner has arrived; most of it is unread
    drop(stream);
    assert_one_reset(&endings);
}
