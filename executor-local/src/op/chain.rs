//! The chain of records an operation leaves in the store: which
//! generations hold what, and the records themselves. A parallel operation
//! writes a full record now and then and small deltas in between (see
//! `Record::base`), so the bytes written stay linear in the iterations.

use pragma_scheduler::WorkerId;
use rangemap::RangeSet;

use pragma_checkpoint::Manifest;

use super::Op;
use crate::persist::{CandidatesPart, candidates};
use crate::record::{Record, ranges_of};
use crate::report::FinalStatus;

/// The deltas after which a full record comes early (see
/// [`RecordChain::wants_full`]).
const MANY_DELTAS: usize = 64;

/// Where an operation's records are, and how much of it they cover.
pub(crate) struct RecordChain {
    /// The commit that holds the state at submission.
    pub(crate) submission_generation: u64,
    /// The latest commit (a repeat's last checkpoint, the latest record).
    pub(crate) last_generation: u64,
    /// The last full record (at first the submission's; a repeat's last
    /// checkpoint), and the deltas since that hold candidates: the records
    /// whose `candidates` parts hold every recorded candidate, in order.
    pub(crate) full_generation: u64,
    delta_generations: Vec<u64>,
    /// The entries in the deltas since the last full record, and in it.
    delta_entries: usize,
    full_entries: usize,
    /// How many abandoned iterations the records cover.
    recorded_abandoned: usize,
    /// The last full record is an earlier version's, with candidates in
    /// its metadata: they wait among the unrecorded ones, so the next
    /// record must be full (a delta's part would hold them a second time).
    base_holds_candidates: bool,
}

/// What a group commit writes, beside the iterations it records.
pub(crate) struct Written {
    /// Whether the record is full (else a delta).
    pub(crate) full: bool,
    /// The entries it adds to the chain, and the entries of the whole.
    pub(crate) entries: usize,
    pub(crate) total_entries: usize,
    /// How many unrecorded candidates it records (and the bytes of their
    /// lines), and how many abandoned iterations it brings up to date.
    pub(crate) candidates: usize,
    pub(crate) candidate_bytes: usize,
    pub(crate) abandoned: usize,
}

/// A group commit, ready to be written.
pub(crate) struct Batch<St> {
    pub(crate) record: Record,
    pub(crate) candidates: CandidatesPart,
    pub(crate) written: Written,
    /// The best state, if this commit is the one to hold it.
    pub(crate) best_state: Option<St>,
    pub(crate) best_iteration: Option<u64>,
    /// What the clean-up after it must keep, if there is one.
    pub(crate) keep: Vec<u64>,
    pub(crate) clean_up: bool,
}

/// A resumed operation's chain of records in the store: its full record,
/// and the deltas after it that hold candidates.
pub(crate) struct RecordedChain {
    pub(crate) full: u64,
    pub(crate) deltas: Vec<u64>,
}

impl RecordedChain {
    /// The chain of records `latest` (whose base is `base`) ends, among
    /// `checkpoints`.
    pub(crate) fn of(checkpoints: &[Manifest], latest: &Manifest, base: Option<u64>) -> Self {
        let full = base.unwrap_or(latest.generation());
        let deltas = checkpoints
            .iter()
            .filter(|m| m.generation() > full && m.generation() <= latest.generation())
            .filter(|m| m.parts().iter().any(|p| p.name == candidates::PART))
            .map(Manifest::generation)
            .collect();
        RecordedChain { full, deltas }
    }

    /// Its records, in order.
    pub(crate) fn generations(&self) -> Vec<u64> {
        let mut all = vec![self.full];
        all.extend(self.deltas.iter().copied());
        all
    }
}

impl RecordChain {
    /// The chain of a new operation (its submission is its first full
    /// record), or of a resumed one.
    pub(crate) fn new(
        submission_generation: u64,
        last_generation: u64,
        chain: Option<RecordedChain>,
    ) -> Self {
        let RecordedChain {
            full: full_generation,
            deltas: delta_generations,
        } = chain.unwrap_or(RecordedChain {
            full: submission_generation,
            deltas: Vec::new(),
        });
        RecordChain {
            submission_generation,
            last_generation,
            full_generation,
            delta_generations,
            delta_entries: 0,
            full_entries: 0,
            recorded_abandoned: 0,
            base_holds_candidates: false,
        }
    }

    /// The operation is taken up from an earlier version's record whose
    /// metadata holds candidates (see `base_holds_candidates`).
    pub(crate) fn resumed_with_candidates_in_metadata(&mut self) {
        self.base_holds_candidates = true;
    }

    /// The generation of the last repeat checkpoint (0: the submission).
    pub(crate) fn last_checkpoint(&self) -> u64 {
        self.last_generation
    }

    /// The records whose candidates parts a full record's part is made of.
    pub(crate) fn sources(&self) -> Vec<u64> {
        let mut sources = vec![self.full_generation];
        sources.extend(self.delta_generations.iter().copied());
        sources
    }

    /// Whether a record adding `new_entries` is to be full: once the deltas
    /// since the last outweigh it a few times over, so full records (and
    /// the clean-ups after them) are rare, and the bytes they rewrite stay
    /// linear in the iterations; or once there are many deltas holding a
    /// quarter as much as it, so that an operation recording a few
    /// iterations at a time does not pile up commits (every load and
    /// clean-up reads them all).
    fn wants_full(&self, new_entries: usize) -> bool {
        let entries = self.delta_entries + new_entries;
        self.base_holds_candidates
            || entries > 3 * self.full_entries.max(256)
            || (self.delta_generations.len() >= MANY_DELTAS && 4 * entries >= self.full_entries)
    }

    /// What must survive the clean-up after a record: the submission, and
    /// the chain of records since the last full one unless it is `full`.
    pub(crate) fn keep(&self, full: bool) -> Vec<u64> {
        let mut keep = vec![self.submission_generation];
        if !full {
            keep.extend(self.sources());
        }
        keep
    }

    /// A record is in `generation`: a full one (a group commit's, a
    /// repeat's checkpoint) starts the chain anew.
    pub(crate) fn written(&mut self, written: &Written, generation: u64) {
        if written.full {
            self.base_holds_candidates = false;
            self.full_generation = generation;
            self.delta_generations.clear();
            self.delta_entries = 0;
            self.full_entries = written.total_entries;
        } else {
            self.delta_generations.push(generation);
            self.delta_entries += written.entries;
        }
        self.recorded_abandoned = written.abandoned;
        self.last_generation = generation;
    }
}

impl<St> Op<St> {
    /// A full record of the operation, and its candidates part: every
    /// candidate (the chain's parts streamed, then the unrecorded ones).
    pub(crate) fn full_record(
        &self,
        ended: Option<FinalStatus>,
    ) -> (Record, CandidatesPart, Written) {
        let (new, candidates) = self.selection.unrecorded_lines();
        let record = Record {
            finished_ranges: ranges_of(&self.progress.finished),
            failed: self.progress.abandoned.clone(),
            ..self.record_header(ended)
        };
        let written = Written {
            full: true,
            entries: candidates,
            total_entries: self.progress.finished_count as usize + self.selection.count as usize,
            candidates,
            candidate_bytes: new.len(),
            abandoned: self.progress.abandoned.len(),
        };
        let part = CandidatesPart {
            earlier: self.chain.sources(),
            new,
        };
        (record, part, written)
    }

    /// A delta on the chain: what changed since its last record, with
    /// `finished` newly recorded as finished; its candidates part holds the
    /// unrecorded candidates.
    pub(crate) fn delta_record(
        &self,
        ended: Option<FinalStatus>,
        finished: &[(WorkerId, u64)],
    ) -> (Record, CandidatesPart, Written) {
        let (new, candidates) = self.selection.unrecorded_lines();
        let entries = finished.len() + candidates;
        let finished: RangeSet<u64> = finished.iter().map(|&(_, i)| i..i + 1).collect();
        let record = Record {
            base: Some(self.chain.full_generation),
            finished_ranges: ranges_of(&finished),
            failed: self.progress.abandoned[self.chain.recorded_abandoned..].to_vec(),
            ..self.record_header(ended)
        };
        let written = Written {
            full: false,
            entries,
            total_entries: 0,
            candidates,
            candidate_bytes: new.len(),
            abandoned: self.progress.abandoned.len(),
        };
        (record, CandidatesPart::new(new), written)
    }

    /// A record without the lists that grow with the iterations.
    fn record_header(&self, ended: Option<FinalStatus>) -> Record {
        let pending_runs = match &ended {
            Some(_) => 0,
            None if self.is_repeat() => self.runs_since_checkpoint,
            None => self.usage.in_flight,
        };
        let started = match &ended {
            Some(_) => Vec::new(),
            None => self.attempts.running(),
        };
        Record {
            base: None,
            directive: self.directive.clone(),
            body: self.body.to_string(),
            ended,
            iterations_done: self.progress.iterations_done,
            finished: Vec::new(),
            finished_ranges: Vec::new(),
            selector: self.selection.selector.clone(),
            best: self.selection.best.clone(),
            candidates: Vec::new(),
            candidate_count: self.selection.count,
            failed: Vec::new(),
            usage: self.usage.total,
            pending_runs,
            started,
            stopped_early: self.stop.met.clone(),
            since_best: self.stop.since_best(),
            extended: false,
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
        let unrecorded = self.selection.unrecorded_count();
        let full = self.chain.wants_full(workers.len() + unrecorded);
        let (mut record, candidates, mut written) = if full {
            let (mut record, part, written) = self.full_record(None);
            let mut finished = self.progress.finished.clone();
            for &(_, i) in workers {
                finished.insert(i..i + 1);
            }
            record.finished_ranges = ranges_of(&finished);
            (record, part, written)
        } else {
            self.delta_record(None, workers)
        };
        written.total_entries += workers.len();
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
            candidates,
            written,
            keep: self.chain.keep(full),
            clean_up: full || best_state.is_some(),
            best_state,
            best_iteration,
        }
    }

    /// The final record, with status `status`: a delta on the chain of
    /// records, with the candidates no commit holds yet (a full record if
    /// the chain's base is an earlier version's, see `wants_full`).
    pub(crate) fn final_record(&self, status: &FinalStatus) -> (Record, CandidatesPart) {
        let (record, part, _) = if self.chain.base_holds_candidates {
            self.full_record(Some(status.clone()))
        } else {
            self.delta_record(Some(status.clone()), &[])
        };
        (record, part)
    }

    /// A repeat's record of its usage between checkpoints: a delta on its
    /// last checkpoint, with no candidates part (so it counts only the
    /// candidates the chain holds, not those waiting for a checkpoint).
    pub(crate) fn usage_record(&self) -> Record {
        let mut record = self.record_header(None);
        record.base = Some(self.chain.full_generation);
        record.candidate_count -= self.selection.unrecorded_count() as u64;
        if let Some(best) = &mut record.best
            && best.generation.is_none()
        {
            best.generation = Some(self.chain.last_generation);
        }
        record
    }
}
