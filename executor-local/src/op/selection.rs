//! The best so far: the selector that ranks candidates, the candidates
//! not yet in the store (the others are only there), and the best state
//! with where it is (to be) stored.

use pragma_parse::{Directive, Objective as DirectiveObjective};
use pragma_selector::{Direction, Evaluation, Offer, Selector};

use crate::persist::candidates;
use crate::record::{BestRecord, CandidateRecord, score_text, score_value};
use crate::report::{BestScore, CandidateScore, FinalStatus};

/// The selector a directive asks for (`--max-by`, `--min-by`), if any.
pub(crate) fn selector_of(directive: &Directive) -> Option<Selector> {
    directive.select().map(|s| {
        Selector::new(match s.objective() {
            DirectiveObjective::Max => Direction::Max,
            DirectiveObjective::Min => Direction::Min,
        })
    })
}

/// How an operation picks its best, and the best so far.
pub(crate) struct Selection<St> {
    /// `None`: the directive selects nothing.
    pub(crate) selector: Option<Selector>,
    /// The candidates no commit holds yet, in the order they were
    /// offered, as the lines of a part (a few bytes each); the earlier
    /// ones are only in the store.
    unrecorded: Vec<u8>,
    unrecorded_count: usize,
    /// How many candidates there are in all.
    pub(crate) count: u64,
    /// The score of the latest candidate.
    pub(crate) last_score: Option<f64>,
    /// The best so far, and the commit that holds its state (`None` there:
    /// the next commit will).
    pub(crate) best: Option<BestRecord>,
    /// The best state, while it is in memory.
    pub(crate) best_state: Option<St>,
    /// Parallel: the best state is not in the store yet; the next group
    /// commit writes it.
    best_dirty: bool,
}

/// What the selector made of one candidate.
pub(crate) struct Judged {
    /// Its score, if it is valid.
    pub(crate) score: Option<f64>,
    /// Why it is not valid, if it is not.
    pub(crate) invalid: Option<String>,
    pub(crate) new_best: bool,
}

impl<St> Selection<St> {
    pub(crate) fn new(selector: Option<Selector>) -> Self {
        Selection {
            selector,
            unrecorded: Vec::new(),
            unrecorded_count: 0,
            count: 0,
            last_score: None,
            best: None,
            best_state: None,
            best_dirty: false,
        }
    }

    /// Takes up a record's selection: `count` candidates in the store, and
    /// those an earlier version kept in its metadata (to be written into
    /// the next commit's part); a best whose record names no commit is in
    /// `last_generation`'s.
    pub(crate) fn resume_from(
        &mut self,
        selector: Option<Selector>,
        count: u64,
        in_metadata: &[CandidateRecord],
        best: Option<BestRecord>,
        last_generation: u64,
    ) {
        self.selector = selector;
        self.unrecorded.clear();
        for candidate in in_metadata {
            candidates::encode_into(&mut self.unrecorded, &CandidateScore::from(candidate));
        }
        self.unrecorded_count = in_metadata.len();
        self.count = count + in_metadata.len() as u64;
        self.best = best.map(|mut best| {
            best.generation = best.generation.or(Some(last_generation));
            best
        });
    }

    /// Offers iteration `iteration`'s evaluation to the selector; `None`
    /// if there is none.
    pub(crate) fn judge(&mut self, iteration: u64, evaluation: Evaluation) -> Option<Judged> {
        let selector = self.selector.as_mut()?;
        let scored = match &evaluation {
            Evaluation::Score(score) => Some(*score),
            _ => None,
        };
        let offer = selector.offer(iteration, evaluation);
        let (score, invalid) = match &offer {
            Offer::Invalid(reason) => (None, Some(reason.to_string())),
            _ => (scored, None),
        };
        Some(Judged {
            score,
            invalid,
            new_best: offer.is_new_best(),
        })
    }

    pub(crate) fn push_candidate(
        &mut self,
        iteration: u64,
        score: Option<f64>,
        invalid: Option<String>,
    ) {
        let candidate = CandidateScore {
            iteration,
            score,
            invalid,
        };
        candidates::encode_into(&mut self.unrecorded, &candidate);
        self.unrecorded_count += 1;
        self.count += 1;
        self.last_score = score;
    }

    /// The candidates no commit holds yet, as the lines of a part, and how
    /// many they are.
    pub(crate) fn unrecorded_lines(&self) -> (Vec<u8>, usize) {
        (self.unrecorded.clone(), self.unrecorded_count)
    }

    /// How many candidates no commit holds yet.
    pub(crate) fn unrecorded_count(&self) -> usize {
        self.unrecorded_count
    }

    /// The first `n` unrecorded candidates, the first `bytes` of their
    /// lines, are in the store now.
    pub(crate) fn recorded(&mut self, n: usize, bytes: usize) {
        self.unrecorded.drain(..bytes.min(self.unrecorded.len()));
        self.unrecorded_count = self.unrecorded_count.saturating_sub(n);
    }

    /// Takes `state` as the new best; the next commit that holds it says
    /// where it is.
    pub(crate) fn set_best(&mut self, iteration: u64, score: Option<f64>, state: St) {
        self.best = Some(BestRecord {
            iteration,
            score: score_text(score),
            generation: None,
        });
        self.best_state = Some(state);
    }

    /// Parallel: the best state is to be written by the next group commit
    /// (a repeat's checkpoint holds it anyway).
    pub(crate) fn set_unwritten(&mut self) {
        self.best_dirty = true;
    }

    /// After a failed group commit: the best state is written again if no
    /// commit holds it yet.
    pub(crate) fn unwritten_unless_placed(&mut self) {
        self.best_dirty = self.best.as_ref().is_some_and(|b| b.generation.is_none());
    }

    /// The best state, if the next group commit has to write it (from then
    /// on it no longer has to).
    pub(crate) fn take_unwritten(&mut self) -> Option<St>
    where
        St: Clone,
    {
        if self.best_dirty {
            self.best_dirty = false;
            self.best_state.clone()
        } else {
            None
        }
    }

    /// A best whose commit was pending is in `generation`.
    pub(crate) fn place(&mut self, generation: u64) {
        if let Some(best) = &mut self.best
            && best.generation.is_none()
        {
            best.generation = Some(generation);
        }
    }

    /// The best is in `generation` if it is still iteration `iteration`'s
    /// and its commit was pending (a newer best may have come meanwhile).
    pub(crate) fn place_if(&mut self, iteration: Option<u64>, generation: u64) {
        if let (Some(best), Some(iteration)) = (&mut self.best, iteration)
            && best.iteration == iteration
            && best.generation.is_none()
        {
            best.generation = Some(generation);
        }
    }

    pub(crate) fn best_score(&self) -> Option<BestScore> {
        self.best.as_ref().map(|b| BestScore {
            iteration: b.iteration,
            score: score_value(&b.score),
        })
    }

    /// Why an operation that ran to its end failed for want of a valid
    /// candidate, if it did.
    pub(crate) fn no_result(&self) -> Option<FinalStatus> {
        match self.selector.as_ref().map(Selector::result) {
            Some(Err(none)) => Some(FinalStatus::Failed {
                reason: none.to_string(),
            }),
            _ => None,
        }
    }
}
