//! When a chain expires. Two figures: the earliest expiry over everything the server presented,
//! and over the verified chain only (the path clients actually use). What alerts, warnings and
//! the `certificate_expiry` assertion judge is the verified chain's, or the presented chain's
//! when nothing verified. The target's `alert_before_expiry` is a warning threshold on it: it
//! never fails a run.

use std::time::{Duration, SystemTime};

use super::{TlsFacts, unix_seconds};
use crate::outcome::{Failure, Reason};

/// The certificate of a chain that expires first, and when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    /// Which certificate: `certificate 1 (CN=…)`, or `root CN=…` for a root that was not
    /// presented.
    pub what: String,
    pub not_after: i64,
}

impl TlsFacts {
    /// The certificate of the presented chain that expires first, and when (Unix seconds).
    pub fn earliest_expiry(&self) -> Option<(usize, i64)> {
        self.chain
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.not_after.map(|t| (i, t)))
            .min_by_key(|&(_, t)| t)
    }

    /// Seconds from `at` to the presented chain's earliest expiry; negative once it passed.
    pub fn expires_in(&self, at: SystemTime) -> Option<i64> {
        Some(self.earliest_expiry()?.1 - unix_seconds(at))
    }

    /// The earliest expiry over the verified chain: the presented certificates on its path
    /// below the root, and the root when vantage holds the trusted root's certificate (a copy
    /// the server sends does not count: clients trust their own). `None` when no chain verified.
    pub fn verified_expiry(&self) -> Option<Expiry> {
        let verified = self.verified.as_ref()?;
        let root = verified.anchor.not_after.map(|not_after| Expiry {
            what: format!("root {}", verified.anchor.subject),
            not_after,
        });
        verified
            .presented
            .iter()
            .filter_map(|&i| Some(self.certificate_expiry(i, self.chain.get(i)?.not_after?)))
            .chain(root)
            .min_by_key(|e| e.not_after)
    }

    /// The expiry that matters: the verified chain's, else the presented chain's.
    pub fn expiry(&self) -> Option<Expiry> {
        self.verified_expiry().or_else(|| {
            let (i, not_after) = self.earliest_expiry()?;
            Some(self.certificate_expiry(i, not_after))
        })
    }

    /// Whether [`expiry`](Self::expiry) is within the target's `alert_before_expiry` of `at`,
    /// or past; `None` without a threshold or a certificate.
    pub fn expiring(&self, at: SystemTime) -> Option<bool> {
        let within = self.alert_before_expiry?;
        let left = self.expiry()?.not_after - unix_seconds(at);
        Some(u64::try_from(left).map_or(true, |left| left < within.as_secs()))
    }

    /// The warning that `vantage probe` prints when [`expiring`](Self::expiring) holds.
    pub fn expiry_warning(&self, at: SystemTime) -> Option<String> {
        if self.expiring(at) != Some(true) {
            return None;
        }
        let within = crate::duration::format(self.alert_before_expiry?);
        let expiry = self.expiry()?;
        Some(format!(
            "{}, inside alert_before_expiry {within}",
            in_words(&expiry, unix_seconds(at))
        ))
    }

    fn certificate_expiry(&self, index: usize, not_after: i64) -> Expiry {
        Expiry {
            what: format!("certificate {index} ({})", self.chain[index].subject),
            not_after,
        }
    }
}

/// The `certificate_expiry` assertion: fails when [`TlsFacts::expiry`] is less than `within`
/// after `now`; `setting` names what asked, for the message.
pub fn expiry_check(
    facts: &TlsFacts,
    now: SystemTime,
    within: Duration,
    setting: &str,
) -> Result<(), Failure> {
    let Some(expiry) = facts.expiry() else {
        return Ok(());
    };
    let now = unix_seconds(now);
    let left = expiry.not_after - now;
    if left <= 0 {
        return Err(Failure::new(Reason::TlsCertExpired, in_words(&expiry, now)));
    }
    if u64::try_from(left).is_ok_and(|left| left < within.as_secs()) {
        return Err(Failure::new(
            Reason::TlsCertExpiring,
            format!(
                "{}, inside {setting} {}",
                in_words(&expiry, now),
                crate::duration::format(within)
            ),
        ));
    }
    Ok(())
}

/// `certificate 0 (CN=a) expires in 12.0 days`, or `… expired 2.0 days ago`.
fn in_words(expiry: &Expiry, now: i64) -> String {
    let left = expiry.not_after - now;
    if left <= 0 {
        format!("{} expired {} ago", expiry.what, days(-left))
    } else {
        format!("{} expires in {}", expiry.what, days(left))
    }
}

fn days(seconds: i64) -> String {
    format!("{:.1} days", seconds as f64 / 86_400.0)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::tls::cert::CertFacts;
    use crate::tls::path::{Anchor, VerifiedChain};

    const NOW: i64 = 1_000_000;
    const DAY: i64 = 86_400;

    fn cert(subject: &str, not_after: i64) -> CertFacts {
        CertFacts {
            subject: subject.into(),
            issuer: String::new(),
            subject_go: subject.into(),
            issuer_go: String::new(),
            serial: "01".into(),
            names: vec![],
            sha256: String::new(),
            not_before: Some(0),
            not_after: Some(not_after),
        }
    }

    fn facts_expiring_at(not_after: i64) -> TlsFacts {
        TlsFacts {
            chain: vec![cert("CN=leaf", not_after)],
            ..TlsFacts::default()
        }
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW as u64)
    }

    #[test]
    fn expiry_check_tells_expiring_from_expired() {
        let within = Duration::from_secs(30 * DAY as u64);
        let soon = facts_expiring_at(NOW + 10 * DAY);
        let failure = expiry_check(&soon, now(), within, "certificate_expiry").unwrap_err();
        assert_eq!(failure.reason, Reason::TlsCertExpiring);
        assert_eq!(
            failure.detail,
            "certificate 0 (CN=leaf) expires in 10.0 days, inside certificate_expiry 30d"
        );
        let gone = facts_expiring_at(NOW - DAY);
        assert_eq!(
            expiry_check(&gone, now(), within, "x").unwrap_err().reason,
            Reason::TlsCertExpired
        );
        let later = facts_expiring_at(NOW + 31 * DAY);
        assert!(expiry_check(&later, now(), within, "x").is_ok());
    }

    /// A leaf, its intermediate, and an extra cross-signed root that expires first but is not
    /// on the path that verified.
    fn cross_signed(anchor_not_after: Option<i64>) -> TlsFacts {
        TlsFacts {
            chain: vec![
                cert("CN=leaf", NOW + 60 * DAY),
                cert("CN=intermediate", NOW + 300 * DAY),
                cert("CN=old root", NOW + 2 * DAY),
            ],
            verified: Some(Box::new(VerifiedChain {
                presented: vec![0, 1],
                anchor: Anchor {
                    subject: "CN=root".into(),
                    presented: None,
                    not_after: anchor_not_after,
                },
            })),
            ..TlsFacts::default()
        }
    }

    #[test]
    fn the_verified_chain_ignores_presented_certificates_off_its_path() {
        let facts = cross_signed(None);
        assert_eq!(facts.earliest_expiry(), Some((2, NOW + 2 * DAY)));
        let verified = facts.verified_expiry().unwrap();
        assert_eq!(verified.not_after, NOW + 60 * DAY);
        assert_eq!(verified.what, "certificate 0 (CN=leaf)");
        assert_eq!(facts.expiry(), Some(verified));
    }

    #[test]
    fn a_root_vantage_holds_counts_with_its_own_expiry() {
        let facts = cross_signed(Some(NOW + 20 * DAY));
        let verified = facts.verified_expiry().unwrap();
        assert_eq!(verified.what, "root CN=root");
        assert_eq!(verified.not_after, NOW + 20 * DAY);
    }

    #[test]
    fn a_sent_copy_of_the_root_does_not_count_but_the_trusted_one_does() {
        let mut facts = cross_signed(Some(NOW + 3000 * DAY));
        // The server also sends a re-issue of the trusted root that expired yesterday.
        facts.chain.push(cert("CN=root", NOW - DAY));
        facts.verified.as_mut().unwrap().anchor.presented = Some(3);
        let verified = facts.verified_expiry().unwrap();
        assert_eq!(verified.what, "certificate 0 (CN=leaf)");
        assert_eq!(verified.not_after, NOW + 60 * DAY);
        facts.verified.as_mut().unwrap().anchor.not_after = Some(NOW + 5 * DAY);
        assert_eq!(facts.verified_expiry().unwrap().what, "root CN=root");
    }

    #[test]
    fn without_a_verified_chain_the_presented_one_counts() {
        let facts = TlsFacts {
            verified: None,
            ..cross_signed(None)
        };
        assert_eq!(facts.verified_expiry(), None);
        assert_eq!(facts.expiry().unwrap().what, "certificate 2 (CN=old root)");
    }

    #[test]
    fn alert_before_expiry_warns_and_never_fails() {
        let mut facts = facts_expiring_at(NOW + 12 * DAY);
        assert_eq!(facts.expiring(now()), None);
        facts.alert_before_expiry = Some(Duration::from_secs(30 * DAY as u64));
        assert_eq!(facts.expiring(now()), Some(true));
        assert_eq!(
            facts.expiry_warning(now()).unwrap(),
            "certificate 0 (CN=leaf) expires in 12.0 days, inside alert_before_expiry 30d"
        );
        facts.alert_before_expiry = Some(Duration::from_secs(7 * DAY as u64));
        assert_eq!(facts.expiring(now()), Some(false));
        assert_eq!(facts.expiry_warning(now()), None);
        let gone = TlsFacts {
            alert_before_expiry: Some(Duration::from_secs(DAY as u64)),
            ..facts_expiring_at(NOW - DAY)
        };
        assert_eq!(gone.expiring(now()), Some(true));
        assert!(
            gone.expiry_warning(now())
                .unwrap()
                .contains("expired 1.0 days ago"),
            "{:?}",
            gone.expiry_warning(now())
        );
    }
}
