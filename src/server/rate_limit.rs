//! The web config's `rate_limit`: a token bucket over every request, as the exporter-toolkit's
//! (Go's `rate.Limiter`): `burst` requests at once, then one per `interval`.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::duration::ConfigDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    interval: Option<ConfigDuration>,
    burst: Option<u32>,
}

/// One request per `every`, after a burst of `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    every: Duration,
    burst: u32,
}

impl RawRateLimit {
    /// The rate, or none: an interval of zero turns the limit off, as in the toolkit.
    pub fn rate(&self) -> Result<Option<Rate>, String> {
        let every = self.interval.map_or(Duration::ZERO, |d| d.0);
        if every.is_zero() {
            return Ok(None);
        }
        match self.burst {
            Some(burst) if burst > 0 => Ok(Some(Rate { every, burst })),
            // Go's limiter with a burst of 0 lets nothing through: surely not what is meant.
            _ => Err(
                "rate_limit.burst: at least 1 with an interval (0 would refuse every \
                 request)"
                    .into(),
            ),
        }
    }
}

/// The tokens left, filled at the rate in force when a request comes.
pub struct Bucket {
    tokens: f64,
    at: Option<Instant>,
}

impl Bucket {
    pub fn new() -> Bucket {
        Bucket {
            tokens: 0.0,
            at: None,
        }
    }

    /// Whether a request at `now` may pass under `rate`, taking a token if so. The bucket
    /// starts full.
    pub fn allow(&mut self, rate: Rate, now: Instant) -> bool {
        let burst = f64::from(rate.burst);
        self.tokens = match self.at {
            None => burst,
            Some(at) => {
                let refill =
                    now.saturating_duration_since(at).as_secs_f64() / rate.every.as_secs_f64();
                (self.tokens + refill).min(burst)
            }
        };
        self.at = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(yaml: &str) -> Result<Option<Rate>, String> {
        serde_saphyr::from_str::<RawRateLimit>(yaml).unwrap().rate()
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let rate = rate("{interval: 1s, burst: 3}").unwrap().unwrap();
        let start = Instant::now();
        let mut bucket = Bucket::new();
        let passed = (0..5).filter(|_| bucket.allow(rate, start)).count();
        assert_eq!(passed, 3, "the burst, then nothing at the same instant");
        assert!(!bucket.allow(rate, start + Duration::from_millis(900)));
        assert!(bucket.allow(rate, start + Duration::from_millis(1000)));
        assert!(!bucket.allow(rate, start + Duration::from_millis(1500)));
        let later = start + Duration::from_secs(60);
        let passed = (0..5).filter(|_| bucket.allow(rate, later)).count();
        assert_eq!(
            passed, 3,
            "a long pause fills the bucket no further than the burst"
        );
    }

    #[test]
    fn zero_interval_is_off_and_zero_burst_is_refused() {
        assert_eq!(rate("{interval: 0s, burst: 0}"), Ok(None));
        assert_eq!(rate("{burst: 5}"), Ok(None));
        assert!(rate("{interval: 1s}").unwrap_err().contains("burst"));
        assert!(
            rate("{interval: 1s, burst: 0}")
                .unwrap_err()
                .contains("burst")
        );
    }
}
