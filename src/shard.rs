//! Sharding: N replicas share one config, and each target is probed by exactly one of them.
//!
//! A target's shard depends only on its name and the shard count: a stable 64-bit hash of the
//! name (FNV-1a, then the SplitMix64 finaliser to spread similar names), fed to Lamping and
//! Veach's jump consistent hash. So adding or removing targets never moves another target, and
//! going from N to N+1 shards moves only the 1/(N+1) of targets that the new shard takes over.
//! The algorithm is part of the contract (the README spells it out): a result must not change
//! between versions, or an upgrade would reshuffle every target at once.

use std::fmt;
use std::path::Path;

/// This instance's part of the targets: shard `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Every target: an instance that is not sharded.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn new(index: u32, count: u32) -> Result<Shard, String> {
        if count == 0 {
            return Err("the shard count must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (indexes run from 0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// `INDEX/COUNT`, as `--shard` takes it.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let number = |part: &str, what: &str| {
            part.trim().parse::<u32>().map_err(|_| {
                format!(
                    "{what} {part:?} is not a whole number: --shard takes INDEX/COUNT, such as 0/3"
                )
            })
        };
        let (index, count) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not INDEX/COUNT, such as 0/3"))?;
        Shard::new(number(index, "index")?, number(count, "count")?)
    }

    /// The index is the ordinal at the end of a StatefulSet pod's hostname (`vantage-2` is 2).
    pub fn from_hostname(hostname: &str, count: u32) -> Result<Shard, String> {
        let ordinal = hostname
            .rsplit_once('-')
            .map(|(_, ordinal)| ordinal)
            .filter(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                format!(
                    "hostname {hostname:?} does not end in -ORDINAL, as a StatefulSet pod's does \
                     (vantage-0, vantage-1, ...); use --shard=INDEX/COUNT instead"
                )
            })?;
        let index = ordinal
            .parse::<u32>()
            .map_err(|_| format!("the ordinal in hostname {hostname:?} is too large"))?;
        Shard::new(index, count).map_err(|e| {
            format!("hostname {hostname:?}: {e}; is the StatefulSet scaled beyond --shard.count?")
        })
    }

    /// This machine's hostname (of its UTS namespace, which is the pod's in Kubernetes).
    pub fn hostname() -> Result<String, String> {
        let path = Path::new("/proc/sys/kernel/hostname");
        std::fs::read_to_string(path)
            .map(|h| h.trim().to_string())
            .map_err(|e| format!("cannot read the hostname from {}: {e}", path.display()))
    }

    pub fn index(self) -> u32 {
        self.index
    }

    pub fn count(self) -> u32 {
        self.count
    }

    pub fn is_whole(self) -> bool {
        self.count == 1
    }

    /// Whether this shard probes the target named `name`.
    pub fn owns(self, name: &str) -> bool {
        shard_of(name, self.count) == self.index
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard::WHOLE
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard, of `count` (at least 1, as [`Shard::new`] ensures), that probes the target named
/// `name`.
fn shard_of(name: &str, count: u32) -> u32 {
    jump(mix(fnv1a(name.as_bytes())), count)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// SplitMix64's finaliser: FNV-1a leaves names that differ only in their last byte close in the
/// high bits, which jump hash reads first.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Jump consistent hash (Lamping and Veach, 2014): a bucket in `0..buckets`, where growing
/// `buckets` by one moves a key only into the new bucket.
fn jump(mut key: u64, buckets: u32) -> u32 {
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(buckets) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // The published algorithm computes in floating point; (key >> 33) + 1 is at most 2^31.
        let step = (1u64 << 31) as f64 / ((key >> 33) + 1) as f64;
        next = ((bucket + 1) as f64 * step) as i64;
    }
    u32::try_from(bucket).expect("jump hash returns a bucket below a u32 count")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("target-{i}")).collect()
    }

    #[test]
    fn every_name_lands_in_exactly_one_of_n_shards() {
        for count in [1, 2, 3, 5, 16] {
            let shards: Vec<Shard> = (0..count).map(|i| Shard::new(i, count).unwrap()).collect();
            for name in names(2000) {
                let owners = shards.iter().filter(|s| s.owns(&name)).count();
                assert_eq!(owners, 1, "{name} has {owners} owners of {count} shards");
            }
        }
    }

    #[test]
    fn shards_are_balanced() {
        let count = 4;
        let mut sizes = [0usize; 4];
        for name in names(10_000) {
            sizes[shard_of(&name, count) as usize] += 1;
        }
        for size in sizes {
            assert!(
                (2250..=2750).contains(&size),
                "unbalanced shards: {sizes:?}"
            );
        }
    }

    #[test]
    fn one_more_shard_moves_only_the_targets_it_takes_over() {
        let all = names(10_000);
        let moved: Vec<&String> = all
            .iter()
            .filter(|n| shard_of(n, 5) != shard_of(n, 6))
            .collect();
        assert!(moved.iter().all(|n| shard_of(n, 6) == 5));
        // About a sixth moves; a modulo hash would move five sixths.
        assert!(
            (1400..=1950).contains(&moved.len()),
            "{} of 10000 moved",
            moved.len()
        );
    }

    #[test]
    fn the_assignment_is_fixed_across_versions() {
        // Pinned values, which an independent Python version of the README's algorithm gives
        // too: a change here would reshuffle every sharded deployment on upgrade.
        let pinned: Vec<u32> = ["web", "api", "dns-primary", "mail", "target-0", ""]
            .iter()
            .map(|n| shard_of(n, 7))
            .collect();
        assert_eq!(pinned, vec![3, 4, 6, 1, 0, 5]);
    }

    #[test]
    fn parses_index_over_count() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert_eq!(Shard::parse("0/1"), Ok(Shard::WHOLE));
        for (bad, says) in [
            ("3/3", "out of range for 3 shards"),
            ("0/0", "at least 1"),
            ("1", "not INDEX/COUNT"),
            ("a/3", "index \"a\" is not a whole number"),
            ("1/-2", "count \"-2\" is not a whole number"),
        ] {
            let e = Shard::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn takes_the_index_from_a_statefulset_hostname() {
        assert_eq!(
            Shard::from_hostname("vantage-eu-2", 3),
            Ok(Shard { index: 2, count: 3 })
        );
        assert_eq!(Shard::from_hostname("vantage-0", 1), Ok(Shard::WHOLE));
        for (bad, says) in [
            ("vantage", "does not end in -ORDINAL"),
            ("vantage-", "does not end in -ORDINAL"),
            ("vantage-7f9c-x2", "does not end in -ORDINAL"),
            ("vantage-3", "scaled beyond --shard.count"),
            ("vantage-99999999999", "too large"),
        ] {
            let e = Shard::from_hostname(bad, 3).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
