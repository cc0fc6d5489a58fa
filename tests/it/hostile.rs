//! Nothing a target does may panic vantage, hang a run past its deadline, or leak a socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use vantage::probe::Reason;

use crate::support::{run, target, wait_for};

#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// Accepts, then resets.
    Reset,
    /// Sends without end (bounded at 256 MiB so the test itself stays bounded).
    Flood,
    /// Never says anything; closes when we do.
    Silent,
    /// Sends binary garbage, then closes without reading.
    Garbage,
    /// Sends a byte every 20 ms, never a full answer.
    Trickle,
}

async fn hostile_peer(kind: Hostile, open: Arc<AtomicUsize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            open.fetch_add(1, Ordering::SeqCst);
            let open = Arc::clone(&open);
            tokio::spawn(async move {
                behave(kind, stream).await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    port
}

async fn behave(kind: Hostile, mut stream: TcpStream) {
    match kind {
        Hostile::Reset => {
            SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        Hostile::Flood => {
            let chunk = vec![b'A'; 64 * 1024];
            for _ in 0..4096 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        }
        Hostile::Silent => {
            let mut buf = [0u8; 64];
            while let Ok(1..) = stream.read(&mut buf).await {}
        }
        Hostile::Garbage => {
            let garbage: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
            let _ = stream.write_all(&garbage).await;
        }
        Hostile::Trickle => {
            for _ in 0..500 {
                if stream.write_all(b"z").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Sockets this test process holds open.
fn open_sockets() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_fail_their_probe_within_the_deadline_and_leak_nothing() {
    let open = Arc::new(AtomicUsize::new(0));
    let mut peers = Vec::new();
    for kind in [
        Hostile::Reset,
        Hostile::Flood,
        Hostile::Silent,
        Hostile::Garbage,
        Hostile::Trickle,
    ] {
        peers.push((kind, hostile_peer(kind, Arc::clone(&open)).await));
    }
    let before = open_sockets();
    let timeout = Duration::from_millis(300);

    let mut runs = JoinSet::new();
    for (kind, port) in peers {
        let t = target(
            port,
            "    timeout: 300ms\n    tcp: {send: \"HELLO\\r\\n\", expect: \"^OK\\r\\n\"}\n",
        );
        for _ in 0..20 {
            let t = Arc::clone(&t);
            runs.spawn(async move { (kind, run(&t).await) });
        }
    }
    while let Some(joined) = runs.join_next().await {
        let (kind, run) = joined.expect("a probe task panicked");
        let reason = run.failure().map(|f| f.reason);
        let expected: &[Reason] = match kind {
            Hostile::Reset => &[Reason::ConnectionReset],
            Hostile::Flood | Hostile::Trickle => &[Reason::ExpectMismatch],
            // It closes without reading our request, so its kernel resets (data may win the race).
            Hostile::Garbage => &[Reason::ExpectMismatch, Reason::ConnectionReset],
            Hostile::Silent => &[Reason::Timeout],
        };
        assert!(
            reason.is_some_and(|r| expected.contains(&r)),
            "{kind:?}: {:?}",
            run.failure()
        );
        // A correctness bound, not a speed test: no run may outlive its deadline by much.
        assert!(
            run.duration < timeout + Duration::from_secs(1),
            "{kind:?} ran {:?}",
            run.duration
        );
    }

    wait_for(
        Duration::from_secs(10),
        "the peers to see every connection end",
        || open.load(Ordering::SeqCst) == 0,
    );
    wait_for(
        Duration::from_secs(10),
        "every probe socket to be closed",
        || open_sockets() <= before,
    );
    assert_eq!(open_sockets(), before);
}
