//! vantage with many TCP targets: the cost of `/metrics` (time, bytes, transient memory), the
//! memory per idle target from a thousand to a million targets (with the schedule delay and
//! CPU at each size), and the schedule delay at 1,000 runs a second.

use std::time::{Duration, Instant};

use tokio::time::sleep;

use crate::report::{CurveRow, ScaleRow};
use crate::vantage::{Delay, Vantage};
use crate::{Kind, Plan, Setup, client};

/// Scrapes of `/metrics` per figure of the scale table, whose median it gives.
const SCRAPES: usize = 5;

/// The configs' TCP targets, spread over the loopback addresses.
fn tcp_targets(setup: &Setup, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| Kind::Tcp.vantage_target(setup, i))
        .collect()
}

/// vantage with `targets` TCP targets every `interval`, and the default `failure_reasons`.
pub async fn start(
    setup: &Setup,
    name: &str,
    targets: usize,
    interval: Duration,
) -> Result<Vantage, String> {
    start_with(setup, name, targets, interval, "possible").await
}

/// vantage with `targets` TCP targets every `interval` and the given `failure_reasons`.
async fn start_with(
    setup: &Setup,
    name: &str,
    targets: usize,
    interval: Duration,
    failure_reasons: &str,
) -> Result<Vantage, String> {
    // The timeout must be shorter than the interval, which `--smoke` makes a second or two.
    let timeout = match interval >= Duration::from_secs(10) {
        true => "5s",
        false => "500ms",
    };
    let schedule = format!("{{interval: {}s, timeout: {timeout}}}", interval.as_secs());
    Vantage::start(
        setup,
        name,
        &tcp_targets(setup, targets),
        &schedule,
        failure_reasons,
    )
    .await
}

/// vantage with `targets` TCP targets every `plan.scale_interval` and the given
/// `failure_reasons`, once every target has a result: peak RSS, and the time, size and
/// transient memory of `/metrics`, plain and gzip.
pub async fn scale(
    setup: &Setup,
    plan: &Plan,
    targets: usize,
    failure_reasons: &'static str,
) -> Result<ScaleRow, String> {
    let interval = plan.scale_interval;
    let name = format!("scale-{targets}-{failure_reasons}");
    let vantage = start_with(setup, &name, targets, interval, failure_reasons).await?;
    sleep(interval + Duration::from_secs(2)).await;
    vantage.all_ran(targets, interval).await?;
    let (plain_time, plain_bytes) = median_scrape(&vantage, false).await?;
    let (gzip_time, gzip_bytes) = median_scrape(&vantage, true).await?;
    let (peak, current) = vantage.process.rss()?;
    Ok(ScaleRow {
        targets,
        failure_reasons,
        peak_rss: peak,
        rss: current,
        plain_time,
        plain_bytes,
        gzip_time,
        gzip_bytes,
        plain_transient: vantage.scrape_memory(false).await?,
        gzip_transient: vantage.scrape_memory(true).await?,
    })
}

/// The median of `SCRAPES` scrapes of `/metrics`: the time from the connect to the last byte,
/// and the size on the wire.
async fn median_scrape(vantage: &Vantage, gzip: bool) -> Result<(Duration, usize), String> {
    let mut scrapes = Vec::new();
    for _ in 0..SCRAPES {
        let (body, took) = client::get_ok(vantage.addr, "/metrics", gzip).await?;
        scrapes.push((took, body.len()));
    }
    scrapes.sort();
    Ok(scrapes[SCRAPES / 2])
}

/// The interval that spreads `targets` runs at `plan.curve_rate` a second, at least
/// `plan.curve_min_interval`.
fn curve_interval(plan: &Plan, targets: usize) -> Duration {
    let spread = (targets as f64 / plan.curve_rate).ceil() as u64;
    plan.curve_min_interval.max(Duration::from_secs(spread))
}

/// The memory curve's baseline: vantage's resident size with a single target.
pub async fn baseline(setup: &Setup, plan: &Plan) -> Result<u64, String> {
    let interval = plan.curve_min_interval;
    let vantage = start(setup, "curve-baseline", 1, interval).await?;
    sleep(interval + Duration::from_secs(2)).await;
    let (_, rss) = vantage.process.rss()?;
    vantage.all_ran(1, interval).await?;
    Ok(rss)
}

/// vantage with `targets` idle TCP targets (runs spread over a long interval), once every
/// target has run: its resident size and peak, how long it took to get ready, and the
/// schedule delay and CPU over `plan.delay_window` after the first full interval.
pub async fn curve(setup: &Setup, plan: &Plan, targets: usize) -> Result<CurveRow, String> {
    let interval = curve_interval(plan, targets);
    let vantage = start(setup, &format!("curve-{targets}"), targets, interval).await?;
    eprintln!(
        "bench:   ready after {:.1} s; waiting one interval ({} s)",
        vantage.ready_after.as_secs_f64(),
        interval.as_secs()
    );
    sleep(interval + Duration::from_secs(2)).await;
    // Before any scrape, whose transient buffers the allocator may keep resident.
    let (peak, rss) = vantage.process.rss()?;
    let before = vantage.all_ran(targets, interval).await?;
    let (cpu0, t0) = (vantage.process.cpu_seconds()?, Instant::now());
    sleep(plan.delay_window).await;
    let cpu1 = vantage.process.cpu_seconds()?;
    let seconds = t0.elapsed().as_secs_f64();
    let after = vantage.summary().await?;
    after.no_failures()?;
    Ok(CurveRow {
        targets,
        interval,
        rss,
        peak_rss: peak,
        ready_after: vantage.ready_after,
        delay: Delay::between(&before, &after, seconds)?,
        cpu_cores: (cpu1 - cpu0) / seconds,
    })
}

/// vantage at 1,000 runs a second: how late runs start, from its own histogram over the
/// window after the first interval.
pub async fn schedule_delay(setup: &Setup, plan: &Plan) -> Result<Delay, String> {
    let (targets, interval) = plan.delay;
    let vantage = start(setup, "delay", targets, interval).await?;
    sleep(interval + Duration::from_secs(1)).await;
    let before = vantage.summary().await?;
    let t0 = Instant::now();
    sleep(plan.delay_window).await;
    let after = vantage.summary().await?;
    after.no_failures()?;
    Delay::between(&before, &after, t0.elapsed().as_secs_f64())
}
