//! The chain of records an operation leaves in the store: which
//! generations hold what, and the records themselves. A parallel operation
//! writes a full record now and then and small deltas in between (see
//! `Record::base`), so the bytes written stay linear in the iterations.

use pragma_scheduler::WorkerId;

use super::Op;
use crate::record::{CandidateRecord, Record};
use crate::report::FinalStatus;

/// Where an operation's records are, and how much of it they cover.
pub(crate) struct RecordChain {
    /// The commit that holds the state at submission.
    pub(crate) submission_generation: u64,
    /// The latest commit (a repeat's last checkpoint, the latest record).
    pub(crate) last_generation: u64,
    /// Parallel: the last full record, and the deltas since.
    full_generation: Option<u64>,
    delta_generations: Vec<u64>,
    /// The entries in the deltas since the last full record, and in it.
    delta_entries: usize,
    full_entries: usize,
    /// How many candidates and abandoned iterations the records cover.
    recorded_candidates: usize,
    recorded_abandoned: usize,
}

/// What a group commit writes, beside the iterations it records.
pub(crate) struct Written {
    /// Whether the record is full (else a delta).
    pub(crate) full: bool,
    /// The entries it adds to the chain.
    pub(crate) entries: usize,
    /// How many candidates and abandoned iterations it brings up to date.
    pub(crate) candidates: usize,
    pub(crate) abandoned: usize,
}

/// A group commit, ready to be written.
pub(crate) struct Batch<St> {
    pub(crate) record: Record,
    pub(crate) written: Written,
    /// The best state, if this commit is the one to hold it.
    pub(crate) best_state: Option<St>,
    pub(crate) best_iteration: Option<u64>,
    /// What the clean-up after it must keep, if there is one.
    pub(crate) keep: Vec<u64>,
    pub(crate) clean_up: bool,
}

impl RecordChain {
    pub(crate) fn new(submission_generation: u64, last_generation: u64) -> Self {
        RecordChain {
            submission_generation,
            last_generation,
            full_generation: None,
            delta_generations: Vec::new(),
            delta_entries: 0,
            full_entries: 0,
            recorded_candidates: 0,
            recorded_abandoned: 0,
        }
    }

    /// The generation of the last repeat checkpoint (0: the submission).
    pub(crate) fn last_checkpoint(&self) -> u64 {
        self.last_generation
    }

    /// Whether a record adding `new_entries` is to be full: the first one
    /// is, and then one once the deltas since the last outweigh it a few
    /// times over, so full records (and the clean-ups after them) are rare.
    fn wants_full(&self, new_entries: usize) -> bool {
        self.full_generation.is_none()
            || self.delta_entries + new_entries > 3 * self.full_entries.max(256)
    }

    /// What must survive the clean-up after a record: the submission, and
    /// the chain of records since the last full one unless it is `full`.
    fn keep(&self, full: bool) -> Vec<u64> {
        let mut keep = vec![self.submission_generation];
        if !full {
            keep.extend(self.full_generation);
            keep.extend(self.delta_generations.iter().copied());
        }
        keep
    }

    /// A group commit is in `generation`; `finished` iterations are on
    /// record with it.
    pub(crate) fn written(&mut self, written: &Written, generation: u64, finished: usize) {
        if written.full {
            self.full_generation = Some(generation);
            self.delta_generations.clear();
            self.delta_entries = 0;
            self.full_entries = finished + written.candidates;
        } else {
            self.delta_generations.push(generation);
            self.delta_entries += written.entries;
        }
        self.recorded_candidates = written.candidates;
        self.recorded_abandoned = written.abandoned;
        self.last_generation = generation;
    }
}

impl<St> Op<St> {
    /// A whole record of the operation.
    pub(crate) fn record(&self, ended: Option<FinalStatus>) -> Record {
        Record {
            finished: self.progress.finished.iter().copied().collect(),
            candidates: self
                .selection
                .candidates
                .iter()
                .map(CandidateRecord::from)
                .collect(),
            failed: self.progress.abandoned.clone(),
            ..self.record_header(ended)
        }
    }

    /// A record without the lists that grow with the iterations.
    fn record_header(&self, ended: Option<FinalStatus>) -> Record {
        let pending_runs = match &ended {
            Some(_) => 0,
            None if self.is_repeat() => self.runs_since_checkpoint,
            None => self.usage.in_flight,
        };
        Record {
            base: None,
            directive: self.directive.to_string(),
            body: self.body.to_string(),
            ended,
            iterations_done: self.progress.iterations_done,
            finished: Vec::new(),
            selector: self.selection.selector.clone(),
            best: self.selection.best.clone(),
            candidates: Vec::new(),
            failed: Vec::new(),
            usage: self.usage.total,
            pending_runs,
        }
    }

    /// The group commit recording `workers`' iterations: a delta listing
    /// what changed since the previous record, or a full record of
    /// everything (see [`RecordChain::wants_full`]), with the best state
    /// if it is not in the store yet.
    pub(crate) fn batch(&mut self, workers: &[(WorkerId, u64)]) -> Batch<St>
    where
        St: Clone,
    {
        let candidates = &self.selection.candidates;
        let new_entries = workers.len() + candidates.len() - self.chain.recorded_candidates;
        let full = self.chain.wants_full(new_entries);
        let mut record;
        if full {
            record = self.record(None);
            record.finished.extend(workers.iter().map(|(_, i)| *i));
            record.finished.sort_unstable();
        } else {
            record = self.record_header(None);
            record.base = self.chain.full_generation;
            record.finished = workers.iter().map(|(_, i)| *i).collect();
            record.candidates = candidates[self.chain.recorded_candidates..]
                .iter()
                .map(CandidateRecord::from)
                .collect();
            record.failed = self.progress.abandoned[self.chain.recorded_abandoned..].to_vec();
        }
        let written = Written {
            full,
            entries: new_entries,
            candidates: candidates.len(),
            abandoned: self.progress.abandoned.len(),
        };
        let best_state = self.selection.take_unwritten();
        let best_iteration = best_state
            .as_ref()
            .and(self.selection.best.as_ref())
            .map(|b| b.iteration);
        // A best whose state this commit does not carry is in an earlier
        // one: the latest, where the record does not say.
        if best_state.is_none()
            && let Some(best) = &mut record.best
            && best.generation.is_none()
        {
            best.generation = Some(self.chain.last_generation);
        }
        Batch {
            record,
            written,
            keep: self.chain.keep(full),
            clean_up: full || best_state.is_some(),
            best_state,
            best_iteration,
        }
    }

    /// The final record, with status `status`. Once everything finished is
    /// on record, it is a delta on the chain of records, not a full record
    /// of every candidate again.
    pub(crate) fn final_record(&self, status: &FinalStatus) -> Record {
        let all_recorded = self.group.pending.is_empty()
            && self.chain.recorded_candidates == self.selection.candidates.len()
            && self.chain.recorded_abandoned == self.progress.abandoned.len();
        match self.chain.full_generation {
            Some(base) if all_recorded => Record {
                base: Some(base),
                ..self.record_header(Some(status.clone()))
            },
            _ => self.record(Some(status.clone())),
        }
    }
}
