//! What the executor writes into each checkpoint's metadata, so that a new
//! executor can resume an operation from the store alone. The metadata
//! stays small whatever the number of iterations: finished iterations are
//! ranges, and the candidates' scores are in a data part of their own (see
//! `persist::candidates`), not here.

use std::ops::Range;

use pragma_parse::Directive;
use pragma_selector::{Selector, parse_score};
use rangemap::RangeSet;
use serde::{Deserialize, Serialize};

use crate::report::{CandidateScore, FinalStatus, Usage};

/// The metadata of every commit of an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// `None`: this record is whole. `Some(g)`: it lists only what changed
    /// since the previous record (`finished_ranges`, `failed` and the
    /// candidates in its `candidates` part are the new ones); the whole is
    /// the full record of generation `g` and every record after it, in
    /// order. The other fields are always whole.
    #[serde(default)]
    pub(crate) base: Option<u64>,
    /// The directive, stored in canonical form.
    #[serde(with = "pragma_parse::canonical")]
    pub(crate) directive: Directive,
    pub(crate) body: String,
    /// `None` while it runs.
    pub(crate) ended: Option<FinalStatus>,
    /// Repeat: iterations covered by the latest checkpoint.
    pub(crate) iterations_done: u64,
    /// Parallel: iterations recorded as finished, one by one (records of
    /// earlier versions; read, never written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) finished: Vec<u64>,
    /// Parallel: iterations recorded as finished, as `[start, end)` ranges.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) finished_ranges: Vec<(u64, u64)>,
    pub(crate) selector: Option<Selector>,
    pub(crate) best: Option<BestRecord>,
    /// Candidates in the metadata (records of earlier versions; read,
    /// never written: they are in `candidates` parts now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) candidates: Vec<CandidateRecord>,
    /// How many candidates the chain of records up to this one holds.
    #[serde(default)]
    pub(crate) candidate_count: u64,
    pub(crate) failed: Vec<(u64, String)>,
    pub(crate) usage: Usage,
    /// Runs `usage` counts whose results this record does not hold: a
    /// repeat's runs since its last checkpoint, a parallel operation's runs
    /// in flight. A resume after a crash counts them as lost work.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) pending_runs: u64,
    /// The iterations running when the record was made, and which start
    /// of each it was: a resume after a crash counts their starts on from
    /// there (an iteration that started after the last record starts
    /// again as its first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) started: Vec<(u64, u32)>,
    /// Why a stop rule (`--patience`, `--target`) ended it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stopped_early: Option<String>,
    /// A repeat's committed checkpoints since its best one (`--patience`
    /// goes on from there after a resume).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) since_best: u64,
    /// Taken up to run more iterations ([`Executor::extend`]): its stop
    /// rules start over. Never stored.
    ///
    /// [`Executor::extend`]: crate::Executor::extend
    #[serde(skip)]
    pub(crate) extended: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Record {
    /// Adds a delta record of generation `generation` to this whole one.
    pub(crate) fn apply(&mut self, delta: Record, generation: u64) {
        self.finished.extend(delta.finished);
        self.finished_ranges.extend(delta.finished_ranges);
        self.candidates.extend(delta.candidates);
        self.candidate_count = delta.candidate_count;
        self.failed.extend(delta.failed);
        self.ended = delta.ended;
        self.iterations_done = delta.iterations_done;
        self.selector = delta.selector;
        self.best = delta.best.map(|mut best| {
            best.generation = best.generation.or(Some(generation));
            best
        });
        self.usage = delta.usage;
        self.pending_runs = delta.pending_runs;
        self.started = delta.started;
        self.stopped_early = delta.stopped_early;
        self.since_best = delta.since_best;
    }

    /// The iterations recorded as finished, in either form.
    pub(crate) fn finished_set(&self) -> RangeSet<u64> {
        let mut set: RangeSet<u64> = self.finished.iter().map(|&i| i..i + 1).collect();
        for &(start, end) in &self.finished_ranges {
            if start < end {
                set.insert(start..end);
            }
        }
        set
    }

    /// How many candidates the chain holds, counting those of earlier
    /// versions' records in the metadata.
    pub(crate) fn candidates_held(&self) -> u64 {
        self.candidate_count + self.candidates.len() as u64
    }
}

/// `set`'s ranges, as a record writes them.
pub(crate) fn ranges_of(set: &RangeSet<u64>) -> Vec<(u64, u64)> {
    set.iter().map(|r| (r.start, r.end)).collect()
}

/// `set`'s ranges, as the scheduler takes them.
pub(crate) fn scheduler_ranges(set: &RangeSet<u64>) -> Vec<Range<u64>> {
    set.iter().cloned().collect()
}

/// How many iterations `set` holds.
pub(crate) fn count_of(set: &RangeSet<u64>) -> u64 {
    set.iter().map(|r| r.end - r.start).sum()
}

/// The best candidate and where its state is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BestRecord {
    pub(crate) iteration: u64,
    pub(crate) score: Option<String>,
    /// The commit whose `state` part is the best state; `None` means the
    /// commit this record is in.
    pub(crate) generation: Option<u64>,
}

/// A candidate's score, written as text so that infinities survive JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CandidateRecord {
    pub(crate) iteration: u64,
    pub(crate) score: Option<String>,
    pub(crate) invalid: Option<String>,
}

pub(crate) fn score_text(score: Option<f64>) -> Option<String> {
    score.map(|s| s.to_string())
}

pub(crate) fn score_value(text: &Option<String>) -> Option<f64> {
    text.as_deref().and_then(|t| parse_score(t).ok())
}

impl From<&CandidateScore> for CandidateRecord {
    fn from(c: &CandidateScore) -> Self {
        CandidateRecord {
            iteration: c.iteration,
            score: score_text(c.score),
            invalid: c.invalid.clone(),
        }
    }
}

impl From<&CandidateRecord> for CandidateScore {
    fn from(c: &CandidateRecord) -> Self {
        CandidateScore {
            iteration: c.iteration,
            score: score_value(&c.score),
            invalid: c.invalid.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before finished iterations became ranges and
    /// candidates moved to their own part still read, as the same story.
    #[test]
    fn records_of_earlier_versions_still_read() {
        let old = serde_json::json!({
            "base": null, "directive": "#pragma parallel --iterations 6 --max-by x",
            "body": "body", "ended": null, "iterations_done": 0,
            "finished": [0, 1, 2, 4], "selector": null, "best": null,
            "candidates": [
                {"iteration": 0, "score": "1", "invalid": null},
                {"iteration": 4, "score": null, "invalid": "NaN"}
            ],
            "failed": [], "usage": {}
        });
        let mut record: Record = serde_json::from_value(old).unwrap();
        assert_eq!(ranges_of(&record.finished_set()), vec![(0, 3), (4, 5)]);
        assert_eq!(record.candidates_held(), 2);
        // A newer delta on it adds ranges and candidates in its part.
        let mut delta = record.clone();
        delta.finished = Vec::new();
        delta.candidates = Vec::new();
        delta.finished_ranges = vec![(3, 4), (5, 6)];
        delta.candidate_count = 3;
        record.apply(delta, 9);
        assert_eq!(ranges_of(&record.finished_set()), vec![(0, 6)]);
        assert_eq!(count_of(&record.finished_set()), 6);
        assert_eq!(record.candidates_held(), 5);
        // What is written now has neither old list.
        let written = serde_json::to_value(Record {
            finished: Vec::new(),
            candidates: Vec::new(),
            ..record
        })
        .unwrap();
        assert!(written.get("finished").is_none() && written.get("candidates").is_none());
        assert_eq!(
            written["finished_ranges"],
            serde_json::json!([[3, 4], [5, 6]])
        );
    }
}
