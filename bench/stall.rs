//! Scrapes must never stall probing: vantage's schedule delay over a window without scrapes,
//! then over an equal window of back-to-back `/metrics` scrapes, as Prometheus sends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::time::sleep;

use crate::report::StallResult;
use crate::vantage::{Delay, Vantage};
use crate::{Plan, Setup, client, scale};

/// The most scrapes of the window with scrapes, whatever its length.
const MAX_SCRAPES: usize = 10_000;

pub async fn stall(setup: &Setup, plan: &Plan) -> Result<StallResult, String> {
    let (targets, interval) = plan.stall;
    let vantage = scale::start(setup, "stall", targets, interval).await?;
    sleep(interval + Duration::from_secs(2)).await;
    let window = plan.delay_window;

    // Both windows begin and end with a scrape (the histogram is read from /metrics), so the
    // edges weigh the same on both; only what happens between them differs.
    let start = vantage.all_ran(targets, interval).await?;
    let t0 = Instant::now();
    sleep(window).await;
    let middle = vantage.summary().await?;
    let quiet = Delay::between(&start, &middle, t0.elapsed().as_secs_f64())?;

    let t1 = Instant::now();
    let (times, sizes) = scrape_for(&vantage, window).await?;
    let end = vantage.summary().await?;
    end.no_failures()?;
    let scraped = Delay::between(&middle, &end, t1.elapsed().as_secs_f64())?;
    Ok(StallResult {
        targets,
        quiet,
        scraped,
        scrapes: times.len(),
        median_scrape: median(times),
        median_bytes: median(sizes),
    })
}

/// Scrapes `/metrics` back to back for `window` (at most `MAX_SCRAPES`), with Prometheus'
/// headers, each read to its end: their times and sizes on the wire.
async fn scrape_for(
    vantage: &Vantage,
    window: Duration,
) -> Result<(Vec<Duration>, Vec<usize>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let addr = vantage.addr;
    let scraper = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let (mut times, mut sizes) = (Vec::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) && times.len() < MAX_SCRAPES {
                let (body, took) = client::get_ok(addr, "/metrics", true).await?;
                times.push(took);
                sizes.push(body.len());
            }
            Ok::<_, String>((times, sizes))
        }
    });
    sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    let (times, sizes) = scraper.await.map_err(|e| e.to_string())??;
    if times.is_empty() {
        return Err("no scrape finished within the window".to_string());
    }
    Ok((times, sizes))
}

fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}
