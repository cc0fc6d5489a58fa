//! How long each phase of an attempt took, kept small: every target's latest run holds them.

use std::fmt;
use std::num::NonZeroU64;
use std::time::Duration;

/// How long each phase of an attempt took; none when the phase did not happen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phases {
    pub dns: Phase,
    pub connect: Phase,
    /// The plaintext STARTTLS negotiation, from the connection being up to the go-ahead.
    pub starttls: Phase,
    /// A completed TLS handshake.
    pub tls: Phase,
    /// HTTP: from the request sent to the first byte of the answer.
    pub first_byte: Phase,
}

impl Phases {
    /// Both phase sets added up, phase by phase: the phases of a run that took several
    /// connections (HTTP redirects). A phase is absent only when it is absent in both.
    pub fn plus(&self, other: &Phases) -> Phases {
        let add = |a: Phase, b: Phase| match (a.get(), b.get()) {
            (Some(a), Some(b)) => Phase::from(a + b),
            (a, b) => Phase::from(a.or(b)),
        };
        Phases {
            dns: add(self.dns, other.dns),
            connect: add(self.connect, other.connect),
            starttls: add(self.starttls, other.starttls),
            tls: add(self.tls, other.tls),
            first_byte: add(self.first_byte, other.first_byte),
        }
    }
}

/// How long one phase took, if it happened: an `Option<Duration>` in 8 bytes instead of 16
/// (whole nanoseconds, up to 584 years), as every target's latest run keeps five of them.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Phase(Option<NonZeroU64>);

impl Phase {
    /// How long the phase took; `None` when it did not happen.
    pub fn get(self) -> Option<Duration> {
        self.0.map(|n| Duration::from_nanos(n.get() - 1))
    }
}

impl From<Duration> for Phase {
    fn from(took: Duration) -> Phase {
        // One more than the nanoseconds, so that a phase of no time is not "none".
        let nanos = u64::try_from(took.as_nanos()).map_or(u64::MAX - 1, |n| n.min(u64::MAX - 1));
        Phase(NonZeroU64::new(nanos + 1))
    }
}

impl From<Option<Duration>> for Phase {
    fn from(took: Option<Duration>) -> Phase {
        took.map_or(Phase::default(), Phase::from)
    }
}

impl fmt::Debug for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_keeps_its_duration_to_the_nanosecond_and_none_apart_from_no_time() {
        assert_eq!(Phase::default().get(), None);
        assert_eq!(Phase::from(None).get(), None);
        assert_eq!(Phase::from(Duration::ZERO).get(), Some(Duration::ZERO));
        let took = Duration::new(3, 141_592_653);
        assert_eq!(Phase::from(took).get(), Some(took));
        assert_eq!(Phase::from(Some(took)), Phase::from(took));
        let longest = Phase::from(Duration::MAX).get().unwrap();
        assert_eq!(longest, Duration::from_nanos(u64::MAX - 1), "saturates");
        let (a, b) = (Phase::from(took), Phase::default());
        let sum = Phases {
            dns: a,
            ..Phases::default()
        }
        .plus(&Phases {
            dns: a,
            tls: b,
            ..Phases::default()
        });
        assert_eq!((sum.dns.get(), sum.tls.get()), (Some(took * 2), None));
    }
}
