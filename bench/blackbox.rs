//! Prometheus' blackbox_exporter (Debian's), started with one module per probe kind and driven
//! through `/probe` as fast as it answers.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::time::sleep;

use crate::certs::SERVER_NAME;
use crate::client::Connection;
use crate::procs::Process;
use crate::report::Load;
use crate::{IN_FLIGHT, MAX_OPERATIONS, Setup, free_port, wait_listening};

/// blackbox_exporter from Debian with one module per kind, trusting the same roots as vantage.
pub async fn start(setup: &Setup) -> Result<(Process, SocketAddr), String> {
    let tls = |ca: &Path| format!("{{ca_file: {}, server_name: {SERVER_NAME}}}", ca.display());
    let conf = format!(
        "modules:
  tcp: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4}}}}
  tls_rsa: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {rsa}}}}}
  tls_ecdsa: {{prober: tcp, timeout: 5s, tcp: {{preferred_ip_protocol: ip4, tls: true, tls_config: {ecdsa}}}}}
  https: {{prober: http, timeout: 5s, http: {{preferred_ip_protocol: ip4, tls_config: {rsa}}}}}
  icmp: {{prober: icmp, timeout: 5s, icmp: {{preferred_ip_protocol: ip4}}}}
",
        rsa = tls(&setup.rsa.ca),
        ecdsa = tls(&setup.ecdsa.ca),
    );
    let path = setup.dir.join("blackbox.yml");
    fs::write(&path, conf).map_err(|e| e.to_string())?;
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut process = Process::start(
        "blackbox_exporter",
        Command::new("prometheus-blackbox-exporter")
            .arg(format!("--config.file={}", path.display()))
            .arg(format!("--web.listen-address={addr}")),
        &setup.dir.join("blackbox.log"),
    )?;
    wait_listening(addr, &mut process).await?;
    Ok((process, addr))
}

/// Drives `/probe` with `IN_FLIGHT` requests at a time over kept-alive connections, and measures
/// blackbox_exporter's CPU over `window` after a warm-up. Every probe must succeed.
pub async fn drive(
    process: &mut Process,
    addr: SocketAddr,
    paths: Vec<String>,
    window: Duration,
) -> Result<Load, String> {
    let paths = Arc::new(paths);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let issued = Arc::new(AtomicU64::new(0));
    let error = Arc::new(Mutex::new(None::<String>));
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (paths, stop, done, issued, error) = (
            Arc::clone(&paths),
            Arc::clone(&stop),
            Arc::clone(&done),
            Arc::clone(&issued),
            Arc::clone(&error),
        );
        workers.push(tokio::spawn(async move {
            let outcome = async {
                let mut connection = Connection::open(addr).await?;
                while !stop.load(Ordering::Relaxed) {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= MAX_OPERATIONS {
                        break;
                    }
                    let path = &paths[n as usize % paths.len()];
                    let (status, body) = connection.get(path, false).await?;
                    if status != 200 || !contains(&body, b"\nprobe_success 1\n") {
                        return Err(format!(
                            "{path}: status {status}, not a success:\n{}",
                            String::from_utf8_lossy(&body)
                        ));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
            .await;
            if let Err(e) = outcome {
                error.lock().unwrap().get_or_insert(e);
                stop.store(true, Ordering::Relaxed);
            }
        }));
    }
    sleep(Duration::from_secs(2)).await;
    let (cpu0, done0, t0) = (
        process.cpu_seconds()?,
        done.load(Ordering::Relaxed),
        Instant::now(),
    );
    sleep(window).await;
    let (cpu1, done1, t1) = (
        process.cpu_seconds()?,
        done.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.map_err(|e| e.to_string())?;
    }
    if let Some(e) = error.lock().unwrap().take() {
        return Err(format!("blackbox_exporter: {e}"));
    }
    Ok(Load {
        operations: done1 - done0,
        cpu_seconds: cpu1 - cpu0,
        seconds: (t1 - t0).as_secs_f64(),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
