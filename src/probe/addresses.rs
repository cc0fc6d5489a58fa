//! `addresses: all`: a run that resolves its host once, probes every address it found as a full
//! attempt of its own, and combines their outcomes into the one the target shows. Generic over
//! the facts and the attempt, so that the registry pins its probes and this knows none of them.

use std::collections::BTreeSet;
use std::future::{Future, poll_fn};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use crate::net::{self, Host, IpVersion, dns};
use crate::outcome::{Failure, Outcome, Phases, Probed, Trace};

/// The most addresses one run probes; a name with more is probed on its first ones (IPv4 first,
/// then in the resolver's order) and a warning, once per name and process, says how many were
/// left out.
pub const MAX_ADDRESSES: usize = 16;

/// How many addresses are probed at once. One after another, a backend that drops packets
/// would hold the run until its deadline and leave the rest unprobed; all at once, a name with
/// many addresses would open that many sockets in one go. A few at a time keeps every backend
/// at one connection per run and the sockets of a run few.
pub const CONCURRENCY: usize = 4;

/// Where a probe's host is, to resolve it once for every address.
#[derive(Debug, Clone)]
pub struct Locator {
    pub host: Host,
    pub ip_version: IpVersion,
    pub resolver: Option<dns::Server>,
}

/// Resolves `locator` once, then runs `attempt` on each address (at most [`MAX_ADDRESSES`],
/// [`CONCURRENCY`] at a time) and combines the outcomes with [`combine`]. A failed lookup is
/// the outcome, with no address.
pub async fn each<F, A, Fut>(locator: &Locator, deadline: Instant, attempt: A) -> Outcome<F>
where
    F: Default + Clone,
    A: Fn(IpAddr) -> Fut,
    Fut: Future<Output = Outcome<F>>,
{
    let (mut ips, lookup) = match net::resolve_every(
        &locator.host,
        locator.ip_version,
        locator.resolver,
        deadline,
    )
    .await
    {
        Ok(found) => found,
        Err(failure) => return Outcome::new(Err(failure), Trace::start()),
    };
    if ips.len() > MAX_ADDRESSES && first_time_too_many(&locator.host) {
        tracing::warn!(
            host = %locator.host,
            found = ips.len(),
            probed = MAX_ADDRESSES,
            "the host has more addresses than a run probes; the others are left out"
        );
    }
    ips.truncate(MAX_ADDRESSES);
    each_of(ips, lookup, attempt).await
}

/// Whether `host` has not been warned about yet: once per process, not at every run.
fn first_time_too_many(host: &Host) -> bool {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    WARNED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(host.to_string())
}

/// Runs `attempt` on each of `ips`, [`CONCURRENCY`] at a time, and combines the outcomes.
async fn each_of<F, A, Fut>(ips: Vec<IpAddr>, lookup: Option<Duration>, attempt: A) -> Outcome<F>
where
    F: Default + Clone,
    A: Fn(IpAddr) -> Fut,
    Fut: Future<Output = Outcome<F>>,
{
    let attempts = ips.into_iter().map(|address| {
        let attempt = attempt(address);
        async move {
            // Taken when the attempt is first polled, that is when its turn comes.
            let start = Instant::now();
            let outcome = attempt.await;
            Probed {
                address,
                took: start.elapsed().saturating_sub(outcome.trace.paused),
                outcome,
            }
        }
    });
    let began = Instant::now();
    let probed = few_at_a_time(attempts.collect(), CONCURRENCY).await;
    let slowest = probed.iter().map(|p| p.took).max().unwrap_or_default();
    let mut outcome = combine(probed, lookup);
    // The run lasts the lookup and its slowest address: the wait for a turn among the four,
    // and an attempt's own pauses (icmp's spacing), are ours, not the network's.
    outcome.trace.paused = began.elapsed().saturating_sub(slowest);
    outcome
}

/// Runs `futures` at most `limit` at a time, in order, and gives their outputs in that order.
/// They are polled here, in the caller's task, not spawned: when the run's deadline wakes
/// everything at once, each attempt ends on its own timeout (which knows the address and the
/// phase) before the run's backstop, which polls this first, could cut it off.
async fn few_at_a_time<T, Fut: Future<Output = T>>(futures: Vec<Fut>, limit: usize) -> Vec<T> {
    let mut running: Vec<Option<Pin<Box<Fut>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut finished: Vec<(usize, T)> = Vec::with_capacity(running.len());
    poll_fn(|cx| {
        let mut started = 0;
        for (i, slot) in running.iter_mut().enumerate() {
            let Some(future) = slot else { continue };
            if started == limit {
                break;
            }
            match future.as_mut().poll(cx) {
                Poll::Ready(output) => {
                    finished.push((i, output));
                    *slot = None;
                }
                Poll::Pending => started += 1,
            }
        }
        if started == 0 {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    finished.sort_by_key(|(i, _)| *i);
    finished.into_iter().map(|(_, output)| output).collect()
}

/// The outcome the target shows for a run over several addresses, each address's own kept in
/// it: the first failing address's outcome, else the first's, with the one lookup's time. The
/// run succeeds only if every address did; its failure is the first failing address's reason,
/// with a detail that names every failing address.
pub fn combine<F: Default + Clone>(
    mut probed: Vec<Probed<F>>,
    lookup: Option<Duration>,
) -> Outcome<F> {
    for p in &mut probed {
        if let Err(failure) = &mut p.outcome.result {
            failure.detail = format!("{}: {}", p.address, failure.detail);
        }
    }
    let failed: Vec<&Probed<F>> = probed
        .iter()
        .filter(|p| p.outcome.result.is_err())
        .collect();
    let shown = failed.first().copied().or(probed.first());
    let Some(shown) = shown else {
        return Outcome::new(
            Err(Failure::new(
                crate::outcome::Reason::DnsError,
                "the lookup found no address",
            )),
            Trace::start(),
        );
    };
    let mut outcome = shown.outcome.clone();
    let looked_up = Phases {
        dns: lookup.into(),
        ..Phases::default()
    };
    outcome.trace.phases = outcome.trace.phases.plus(&looked_up);
    if let Err(first) = &mut outcome.result
        && probed.len() > 1
    {
        let names: Vec<String> = failed.iter().map(|p| p.address.to_string()).collect();
        first.detail = format!(
            "{} of {} addresses failed ({}); {}",
            failed.len(),
            probed.len(),
            names.join(", "),
            first.detail
        );
    }
    outcome.addresses = probed;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Reason, RunPolicy, run_attempts};

    fn probed(address: &str, result: Result<(), Failure>) -> Probed<()> {
        let address: IpAddr = address.parse().unwrap();
        let mut trace = Trace::start();
        trace.address = Some((address, 80).into());
        Probed {
            address,
            outcome: Outcome::new(result, trace),
            took: Duration::from_millis(1),
        }
    }

    fn refused() -> Result<(), Failure> {
        Err(Failure::new(Reason::ConnectionRefused, "refused"))
    }

    #[test]
    fn every_address_succeeding_shows_the_first_with_the_lookup_time() {
        let lookup = Some(Duration::from_millis(3));
        let outcome = combine(
            vec![probed("127.0.0.11", Ok(())), probed("127.0.0.12", Ok(()))],
            lookup,
        );
        assert!(outcome.result.is_ok());
        assert_eq!(outcome.trace.address, Some(([127, 0, 0, 11], 80).into()));
        assert_eq!(outcome.trace.phases.dns.get(), lookup);
        assert_eq!(outcome.addresses.len(), 2);
    }

    #[test]
    fn one_failing_address_fails_the_run_with_its_reason_and_names_it() {
        let outcome = combine(
            vec![
                probed("127.0.0.11", Ok(())),
                probed("127.0.0.12", refused()),
                probed("127.0.0.13", Ok(())),
                probed("127.0.0.14", Err(Failure::new(Reason::Timeout, "slow"))),
            ],
            None,
        );
        let failure = outcome.result.unwrap_err();
        assert_eq!(
            failure.reason,
            Reason::ConnectionRefused,
            "the first failing"
        );
        assert_eq!(
            failure.detail,
            "2 of 4 addresses failed (127.0.0.12, 127.0.0.14); 127.0.0.12: refused"
        );
        assert_eq!(outcome.trace.address, Some(([127, 0, 0, 12], 80).into()));
        let each: Vec<bool> = outcome
            .addresses
            .iter()
            .map(|p| p.outcome.result.is_ok())
            .collect();
        assert_eq!(each, [true, false, true, false], "in resolution order");
        assert_eq!(
            outcome.addresses[3]
                .outcome
                .result
                .as_ref()
                .unwrap_err()
                .detail,
            "127.0.0.14: slow",
            "each address's own failure names it"
        );
    }

    #[test]
    fn a_single_address_keeps_its_failure_named_but_unsummed() {
        let outcome = combine(vec![probed("::1", refused())], None);
        assert_eq!(outcome.result.unwrap_err().detail, "::1: refused");
    }

    #[tokio::test(start_paused = true)]
    async fn few_at_a_time_holds_the_limit_and_keeps_the_order() {
        let running = std::cell::Cell::new(0);
        let most = std::cell::Cell::new(0);
        let futures: Vec<_> = (0..7u64)
            .map(|i| {
                let (running, most) = (&running, &most);
                async move {
                    running.set(running.get() + 1);
                    most.set(most.get().max(running.get()));
                    // The later ones finish first.
                    tokio::time::sleep(Duration::from_millis(70 - 10 * i)).await;
                    running.set(running.get() - 1);
                    i
                }
            })
            .collect();
        let start = Instant::now();
        let outputs = few_at_a_time(futures, 3).await;
        assert_eq!(outputs, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(most.get(), 3);
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "never all 7 at once"
        );
    }

    /// Six addresses, four at a time, each attempt 100 ms of network and 1 s of its own
    /// spacing: the run lasts the slowest address's network time, not the batches' wall time.
    #[tokio::test(start_paused = true)]
    async fn the_run_lasts_its_slowest_address_without_turns_or_spacing() {
        let ips: Vec<IpAddr> = (1..=6).map(|i| IpAddr::from([127, 0, 0, i])).collect();
        let policy = RunPolicy {
            timeout: Duration::from_secs(10),
            retries: 0,
            retry_delay: Duration::ZERO,
            addresses: crate::outcome::Addresses::All,
        };
        let run = run_attempts(&policy, |_| {
            each_of(ips.clone(), None, |ip| async move {
                let mut trace = Trace::start();
                trace.address = Some((ip, 0).into());
                tokio::time::sleep(Duration::from_millis(1100)).await;
                trace.paused = Duration::from_secs(1);
                Outcome::<()>::new(Ok(()), trace)
            })
        })
        .await;
        assert_eq!(run.duration, Duration::from_millis(100));
        let took: Vec<Duration> = run.outcome.addresses.iter().map(|p| p.took).collect();
        assert_eq!(took, [Duration::from_millis(100); 6]);
    }

    #[test]
    fn a_name_with_too_many_addresses_is_warned_about_once() {
        let host = Host::parse("many.too-many.test").unwrap();
        assert!(first_time_too_many(&host));
        assert!(!first_time_too_many(&host), "not again at the next run");
        assert!(first_time_too_many(
            &Host::parse("other.too-many.test").unwrap()
        ));
    }

    #[tokio::test]
    async fn each_address_is_attempted_once_and_kept_in_order() {
        let locator = Locator {
            host: Host::parse("127.0.0.1").unwrap(),
            ip_version: IpVersion::Auto,
            resolver: None,
        };
        let deadline = Instant::now() + Duration::from_secs(1);
        let outcome: Outcome<()> = each(&locator, deadline, |ip| async move {
            let mut trace = Trace::start();
            trace.address = Some((ip, 9).into());
            Outcome::new(refused(), trace)
        })
        .await;
        assert_eq!(outcome.addresses.len(), 1, "an IP literal is one address");
        assert_eq!(
            outcome.trace.phases.dns.get(),
            None,
            "no lookup for a literal"
        );
        assert_eq!(
            outcome.result.unwrap_err().reason,
            Reason::ConnectionRefused
        );
    }
}
