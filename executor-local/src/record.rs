//! What the executor writes into each checkpoint's metadata, so that a new
//! executor can resume an operation from the store alone.

use pragma_selector::{Selector, parse_score};
use serde::{Deserialize, Serialize};

use crate::report::{CandidateScore, FinalStatus, Usage};

/// The metadata of every commit of an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// `None`: this record is whole. `Some(g)`: it lists only what changed
    /// since the previous record (`finished`, `candidates` and `failed` are
    /// the new ones); the whole is the full record of generation `g` and
    /// every record after it, in order. The other fields are always whole.
    #[serde(default)]
    pub(crate) base: Option<u64>,
    /// The directive, in canonical form.
    pub(crate) directive: String,
    pub(crate) body: String,
    /// `None` while it runs.
    pub(crate) ended: Option<FinalStatus>,
    /// Repeat: iterations covered by the latest checkpoint.
    pub(crate) iterations_done: u64,
    /// Parallel: iterations recorded as finished.
    pub(crate) finished: Vec<u64>,
    pub(crate) selector: Option<Selector>,
    pub(crate) best: Option<BestRecord>,
    pub(crate) candidates: Vec<CandidateRecord>,
    pub(crate) failed: Vec<(u64, String)>,
    pub(crate) usage: Usage,
    /// Runs `usage` counts whose results this record does not hold: a
    /// repeat's runs since its last checkpoint, a parallel operation's runs
    /// in flight. A resume after a crash counts them as lost work.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) pending_runs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Record {
    /// Adds a delta record of generation `generation` to this whole one.
    pub(crate) fn apply(&mut self, delta: Record, generation: u64) {
        self.finished.extend(delta.finished);
        self.candidates.extend(delta.candidates);
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
    }
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
