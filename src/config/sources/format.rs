//! Prometheus' SD format: a list of groups, each of `targets` and `labels`, in JSON or YAML;
//! parsed within the source's budget. The `max_targets` limit counts targets and groups as the
//! parser meets them, and a group's labels are counted as they are read, so that a list of
//! millions, or of empty groups, or a group of millions of labels, ends the parse at the first
//! entry past the limit: what a list costs is bounded by `max_targets`, not by what it holds.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::Listed;
use crate::build::S;
use crate::build::error::ConfigError;

/// The most labels a group may have, `__` ones included: far more than any generator writes,
/// and a bound on what each of its targets copies.
pub const MAX_GROUP_LABELS: usize = 256;

/// One group of a list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub targets: S<Vec<Counted>>,
    #[serde(default)]
    pub labels: Labels,
}

/// What the list being parsed may still hold, and the source's `max_targets`, for the message.
#[derive(Clone, Copy)]
struct Budget {
    targets: usize,
    groups: usize,
    max: usize,
}

thread_local! {
    /// The budget of the parse under way on this thread (parses are synchronous).
    static LEFT: Cell<Budget> = const {
        Cell::new(Budget { targets: usize::MAX, groups: usize::MAX, max: usize::MAX })
    };
}

/// Takes one of the budget's `what` (the counter `count` picks), or says the list has too many.
fn take<E: de::Error>(count: fn(&mut Budget) -> &mut usize, what: &str) -> Result<(), E> {
    let mut left = LEFT.get();
    let max = left.max;
    let n = count(&mut left);
    if *n == 0 {
        return Err(E::custom(format!(
            "more {what} than the source's max_targets ({max}): none of them is used"
        )));
    }
    *n -= 1;
    LEFT.set(left);
    Ok(())
}

/// A listed target, counted as it is parsed.
#[derive(Debug)]
pub struct Counted(pub S<String>);

impl<'de> Deserialize<'de> for Counted {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        take(|b| &mut b.targets, "targets")?;
        S::<String>::deserialize(d).map(Counted)
    }
}

/// A group, counted as it is parsed: a list of empty groups costs too.
#[derive(Debug)]
pub struct Group(pub RawGroup);

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        take(|b| &mut b.groups, "groups")?;
        RawGroup::deserialize(d).map(Group)
    }
}

/// A group's labels, at most [`MAX_GROUP_LABELS`], counted as they are read.
#[derive(Debug, Default)]
pub struct Labels(pub BTreeMap<String, S<String>>);

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bounded;
        impl<'de> Visitor<'de> for Bounded {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a mapping of at most {MAX_GROUP_LABELS} labels")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut labels = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, S<String>>()? {
                    if labels.len() == MAX_GROUP_LABELS {
                        return Err(de::Error::custom(format!(
                            "a group of more than {MAX_GROUP_LABELS} labels"
                        )));
                    }
                    labels.insert(k, v);
                }
                Ok(Labels(labels))
            }
        }
        d.deserialize_map(Bounded)
    }
}

/// `listed`'s groups, of at most `targets` targets and as many groups (`max` being the source's
/// `max_targets`).
pub fn parse(listed: &Listed, targets: usize, max: usize) -> Result<Vec<RawGroup>, ConfigError> {
    let budget = || {
        LEFT.set(Budget {
            targets,
            groups: targets,
            max,
        })
    };
    let parsed: Result<Vec<Group>, _> =
        crate::config::load::deserialize(&listed.text, &listed.origin, budget);
    parsed.map(|groups| groups.into_iter().map(|g| g.0).collect())
}

/// Whether the last parse spent its budget of targets or groups: past it, every other list
/// of the source would only say so again.
pub fn spent() -> bool {
    let left = LEFT.get();
    left.targets == 0 || left.groups == 0
}
