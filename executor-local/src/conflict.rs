//! Applying a finished operation's result to a live state that kept
//! changing while the operation ran.

use std::collections::{BTreeMap, BTreeSet};

/// How to settle a variable changed both by the operation and live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Take the operation's value.
    TakeBackground,
    /// Keep the live value.
    KeepLive,
}

/// What to do with conflicts no explicit choice settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Take the operation's value.
    TakeBackground,
    /// Keep the live value.
    KeepLive,
    /// Refuse: every conflict needs an explicit choice.
    Fail,
}

/// The result of comparing the three states, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison<V> {
    /// Variables to set (`Some`) or remove (`None`) in the live state:
    /// changed by the operation and not live.
    pub apply: BTreeMap<String, Option<V>>,
    /// Variables changed by the operation and live, to different values.
    pub conflicts: BTreeMap<String, Conflict<V>>,
}

/// One variable changed on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict<V> {
    /// Its value at submission (`None`: it did not exist).
    pub submitted: Option<V>,
    /// Its live value now.
    pub live: Option<V>,
    /// The operation's value.
    pub background: Option<V>,
}

/// Conflicts left after resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unresolved conflicts in {}: choose for each variable to take the background value or keep the live one", .0.join(", "))]
pub struct Unresolved(pub Vec<String>);

/// Compares the state at submission, the live state now and the
/// operation's result, variable by variable.
///
/// ```
/// use std::collections::BTreeMap;
/// use pragma_executor_local::conflict::{compare, Rule};
///
/// let submitted = BTreeMap::from([("model".to_string(), 1), ("notes".to_string(), 1)]);
/// let live = BTreeMap::from([("model".to_string(), 1), ("notes".to_string(), 2)]);
/// let result = BTreeMap::from([("model".to_string(), 9), ("notes".to_string(), 3)]);
/// let comparison = compare(&submitted, &live, &result);
/// assert_eq!(comparison.apply, BTreeMap::from([("model".to_string(), Some(9))]));
/// assert_eq!(comparison.conflicts.keys().collect::<Vec<_>>(), ["notes"]);
/// let changes = comparison.resolve(&BTreeMap::new(), Rule::KeepLive).unwrap();
/// assert_eq!(changes, BTreeMap::from([("model".to_string(), Some(9))]));
/// ```
pub fn compare<V: Clone + PartialEq>(
    submitted: &BTreeMap<String, V>,
    live: &BTreeMap<String, V>,
    result: &BTreeMap<String, V>,
) -> Comparison<V> {
    let names: BTreeSet<&String> = submitted
        .keys()
        .chain(live.keys())
        .chain(result.keys())
        .collect();
    let mut comparison = Comparison {
        apply: BTreeMap::new(),
        conflicts: BTreeMap::new(),
    };
    for name in names {
        let (before, now, background) = (submitted.get(name), live.get(name), result.get(name));
        let changed_by_operation = before != background;
        let changed_live = before != now;
        if !changed_by_operation || now == background {
            continue;
        }
        if changed_live {
            comparison.conflicts.insert(
                name.clone(),
                Conflict {
                    submitted: before.cloned(),
                    live: now.cloned(),
                    background: background.cloned(),
                },
            );
        } else {
            comparison.apply.insert(name.clone(), background.cloned());
        }
    }
    comparison
}

impl<V: Clone> Comparison<V> {
    /// The changes to make to the live state: the non-conflicting ones, and
    /// each conflict settled by `choices` or else by `rule`.
    pub fn resolve(
        &self,
        choices: &BTreeMap<String, Resolution>,
        rule: Rule,
    ) -> Result<BTreeMap<String, Option<V>>, Unresolved> {
        let mut changes = self.apply.clone();
        let mut unresolved = Vec::new();
        for (name, conflict) in &self.conflicts {
            let resolution = match (choices.get(name), rule) {
                (Some(choice), _) => *choice,
                (None, Rule::TakeBackground) => Resolution::TakeBackground,
                (None, Rule::KeepLive) => Resolution::KeepLive,
                (None, Rule::Fail) => {
                    unresolved.push(name.clone());
                    continue;
                }
            };
            if resolution == Resolution::TakeBackground {
                changes.insert(name.clone(), conflict.background.clone());
            }
        }
        if unresolved.is_empty() {
            Ok(changes)
        } else {
            Err(Unresolved(unresolved))
        }
    }
}
