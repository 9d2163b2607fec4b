//! The streaming selector.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::score::{Evaluation, InvalidReason};

/// Whether the highest or the lowest score wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// `--max-by`: the highest score wins.
    Max,
    /// `--min-by`: the lowest score wins.
    Min,
}

impl Direction {
    /// The ranking of two valid candidates: `Less` when `a` is better.
    /// A better score ranks first; equal scores rank by the lower iteration.
    ///
    /// ```
    /// use pragma_selector::{Candidate, Direction};
    /// use std::cmp::Ordering;
    /// let a = Candidate { iteration: 2, score: 1.0 };
    /// let b = Candidate { iteration: 1, score: 1.0 };
    /// assert_eq!(Direction::Max.rank(&a, &b), Ordering::Greater);
    /// ```
    pub fn rank(self, a: &Candidate, b: &Candidate) -> Ordering {
        // Scores in a selector are never NaN, so partial_cmp always answers.
        let by_score = a.score.partial_cmp(&b.score).unwrap_or(Ordering::Equal);
        let by_score = match self {
            Direction::Max => by_score.reverse(),
            Direction::Min => by_score,
        };
        by_score.then(a.iteration.cmp(&b.iteration))
    }
}

/// A valid candidate: an iteration and its score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// The iteration number the candidate comes from.
    pub iteration: u64,
    /// Its score (never NaN).
    #[serde(with = "json_safe_f64")]
    pub score: f64,
}

/// What an offer did, so the caller can keep or drop the candidate's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// The candidate is the best so far. `evicted` fell out of the kept set
    /// (with top-1: the previous best), and its state can be dropped.
    NewBest {
        /// The candidate no longer kept, if any.
        evicted: Option<Candidate>,
    },
    /// Kept among the top `k` at `rank` (0 is the best), but not the best.
    Kept {
        /// Its place in the kept set.
        rank: usize,
        /// The candidate no longer kept, if any.
        evicted: Option<Candidate>,
    },
    /// Not good enough to be kept; its state can be dropped.
    NotKept,
    /// The candidate cannot be chosen; it was counted.
    Invalid(InvalidReason),
}

impl Offer {
    /// Whether the candidate became the best so far.
    pub fn is_new_best(&self) -> bool {
        matches!(self, Offer::NewBest { .. })
    }
}

/// An invalid candidate, kept as an example for reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidExample {
    /// Its iteration number.
    pub iteration: u64,
    /// Why it is invalid.
    pub reason: InvalidReason,
}

/// How many candidates were invalid, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidCounts {
    /// Candidates whose score was NaN.
    pub nan: u64,
    /// Candidates whose expression the host could not evaluate.
    pub evaluation_failed: u64,
    /// Candidates whose output was not a number.
    pub not_a_number: u64,
    /// The invalid candidate with the lowest iteration number, as an example.
    pub first: Option<InvalidExample>,
}

impl InvalidCounts {
    /// All invalid candidates.
    pub fn total(&self) -> u64 {
        self.nan + self.evaluation_failed + self.not_a_number
    }

    fn record(&mut self, example: InvalidExample) {
        match example.reason {
            InvalidReason::NaN => self.nan += 1,
            InvalidReason::EvaluationFailed(_) => self.evaluation_failed += 1,
            InvalidReason::NotANumber(_) => self.not_a_number += 1,
        }
        self.keep_first(Some(example));
    }

    /// Keeps the example with the lowest iteration (then the smallest
    /// reason), so the choice does not depend on the order of arrival.
    fn keep_first(&mut self, example: Option<InvalidExample>) {
        let key = |e: &InvalidExample| (e.iteration, e.reason.clone());
        self.first = match (self.first.take(), example) {
            (Some(a), Some(b)) => Some(if key(&b) < key(&a) { b } else { a }),
            (a, b) => a.or(b),
        };
    }

    fn merge(&mut self, other: &InvalidCounts) {
        self.nan += other.nan;
        self.evaluation_failed += other.evaluation_failed;
        self.not_a_number += other.not_a_number;
        self.keep_first(other.first.clone());
    }
}

/// No candidate could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NoValidResult {
    /// The invalid candidates: how many, why, and an example.
    pub invalid: InvalidCounts,
}

impl fmt::Display for NoValidResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = &self.invalid;
        if counts.total() == 0 {
            return f.write_str("no valid result: no candidate was scored");
        }
        let mut parts = Vec::new();
        for (count, what) in [
            (counts.nan, "NaN"),
            (counts.evaluation_failed, "failed to evaluate"),
            (counts.not_a_number, "not a number"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
        write!(
            f,
            "no valid result: all {} candidates were invalid ({})",
            counts.total(),
            parts.join(", ")
        )?;
        if let Some(first) = &counts.first {
            write!(f, "; iteration {}: {}", first.iteration, first.reason)?;
        }
        Ok(())
    }
}

/// Selectors with different settings cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot merge selectors: {what} differ ({left} and {right})")]
pub struct MergeError {
    what: &'static str,
    left: String,
    right: String,
}

/// Keeps the best candidate (or the best `k`) of those offered.
///
/// Memory is O(k) whatever the number of offers; an offer costs O(k).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSelector")]
pub struct Selector {
    // Named as stored since the first version: stores keep selectors.
    #[serde(rename = "objective")]
    direction: Direction,
    keep: usize,
    top: Vec<Candidate>,
    valid: u64,
    invalid: InvalidCounts,
}

#[derive(Deserialize)]
struct RawSelector {
    #[serde(rename = "objective")]
    direction: Direction,
    keep: usize,
    top: Vec<Candidate>,
    valid: u64,
    invalid: InvalidCounts,
}

impl TryFrom<RawSelector> for Selector {
    type Error = String;

    fn try_from(raw: RawSelector) -> Result<Self, Self::Error> {
        if raw.keep == 0 {
            return Err("a selector keeps at least 1 candidate".into());
        }
        if raw.top.len() > raw.keep || raw.top.len() as u64 > raw.valid {
            return Err("a selector's kept candidates exceed its counts".into());
        }
        if raw.top.iter().any(|c| c.score.is_nan()) {
            return Err("a selector's kept candidates have a NaN score".into());
        }
        if raw
            .top
            .windows(2)
            .any(|w| raw.direction.rank(&w[0], &w[1]) == Ordering::Greater)
        {
            return Err("a selector's kept candidates are out of order".into());
        }
        Ok(Selector {
            direction: raw.direction,
            keep: raw.keep,
            top: raw.top,
            valid: raw.valid,
            invalid: raw.invalid,
        })
    }
}

impl Selector {
    /// A selector that keeps the single best candidate.
    pub fn new(direction: Direction) -> Self {
        Selector::top_k(direction, 1)
    }

    /// A selector that keeps the best `k` candidates (at least 1).
    pub fn top_k(direction: Direction, k: usize) -> Self {
        Selector {
            direction,
            keep: k.max(1),
            top: Vec::with_capacity(k.clamp(1, 1024)),
            valid: 0,
            invalid: InvalidCounts::default(),
        }
    }

    /// Offers one candidate; says whether it was kept, and what it evicted.
    ///
    /// Iteration numbers are expected to be unique among offers; a number
    /// offered twice counts as two candidates.
    pub fn offer(&mut self, iteration: u64, evaluation: Evaluation) -> Offer {
        let score = match evaluation {
            Evaluation::Score(score) if !score.is_nan() => score,
            Evaluation::Score(_) => return self.reject(iteration, InvalidReason::NaN),
            Evaluation::Invalid(reason) => return self.reject(iteration, reason),
        };
        // -0.0 == 0.0: store one of them so equal candidates are identical.
        let score = if score == 0.0 { 0.0 } else { score };
        let candidate = Candidate { iteration, score };
        self.valid += 1;
        // `top` is sorted best first; insert after everything at least as good.
        let rank = self
            .top
            .partition_point(|kept| self.direction.rank(kept, &candidate) != Ordering::Greater);
        if rank >= self.keep {
            return Offer::NotKept;
        }
        self.top.insert(rank, candidate);
        let evicted = if self.top.len() > self.keep {
            self.top.pop()
        } else {
            None
        };
        if rank == 0 {
            Offer::NewBest { evicted }
        } else {
            Offer::Kept { rank, evicted }
        }
    }

    fn reject(&mut self, iteration: u64, reason: InvalidReason) -> Offer {
        self.invalid.record(InvalidExample {
            iteration,
            reason: reason.clone(),
        });
        Offer::Invalid(reason)
    }

    /// The best candidate so far, if any valid one was offered.
    pub fn best(&self) -> Option<Candidate> {
        self.top.first().copied()
    }

    /// The kept candidates, best first (at most `k`).
    pub fn top(&self) -> &[Candidate] {
        &self.top
    }

    /// The best candidate, or why there is none.
    pub fn result(&self) -> Result<Candidate, NoValidResult> {
        self.best().ok_or_else(|| NoValidResult {
            invalid: self.invalid.clone(),
        })
    }

    /// Whether the highest or the lowest score wins.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// How many candidates are kept (`k`).
    pub fn keep(&self) -> usize {
        self.keep
    }

    /// How many valid candidates were offered.
    pub fn valid_count(&self) -> u64 {
        self.valid
    }

    /// The invalid candidates: how many, why, and an example.
    pub fn invalid(&self) -> &InvalidCounts {
        &self.invalid
    }

    /// Adds the candidates `other` has seen, as if they had been offered here.
    /// The two must have the same direction and `k`, and should have seen
    /// disjoint candidates.
    pub fn merge(&mut self, other: &Selector) -> Result<(), MergeError> {
        if self.direction != other.direction {
            return Err(MergeError {
                what: "objectives",
                left: format!("{:?}", self.direction),
                right: format!("{:?}", other.direction),
            });
        }
        if self.keep != other.keep {
            return Err(MergeError {
                what: "numbers of kept candidates",
                left: self.keep.to_string(),
                right: other.keep.to_string(),
            });
        }
        let direction = self.direction;
        self.top.extend_from_slice(&other.top);
        self.top.sort_by(|a, b| direction.rank(a, b));
        self.top.truncate(self.keep);
        self.valid += other.valid;
        self.invalid.merge(&other.invalid);
        Ok(())
    }
}

/// Serialises non-finite scores as strings in human-readable formats, where
/// JSON would otherwise turn them into `null`.
mod json_safe_f64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() || !serializer.is_human_readable() {
            serializer.serialize_f64(*value)
        } else if value.is_nan() {
            serializer.serialize_str("nan")
        } else if *value > 0.0 {
            serializer.serialize_str("inf")
        } else {
            serializer.serialize_str("-inf")
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(f64),
            Text(String),
        }
        if !deserializer.is_human_readable() {
            return f64::deserialize(deserializer);
        }
        match Repr::deserialize(deserializer)? {
            Repr::Number(value) => Ok(value),
            Repr::Text(text) => match text.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => Err(D::Error::custom(format!(
                    "expected a number, `inf`, `-inf` or `nan`, found `{other}`"
                ))),
            },
        }
    }
}
