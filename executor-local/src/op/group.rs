//! The group commit of a parallel operation: finished iterations wait
//! here to be recorded, one commit at a time, at most one per interval.

use std::time::{Duration, Instant};

use pragma_scheduler::WorkerId;

/// What is waiting to be recorded, and when the next record may go.
pub(crate) struct GroupCommit {
    /// Finished iterations (with the workers that ran them) that the next
    /// group commit records.
    pub(crate) pending: Vec<(WorkerId, u64)>,
    /// A commit of the operation is on its way (a group commit, a repeat's
    /// checkpoint, the final record): there is one at a time, so records
    /// follow each other in order.
    pub(crate) committing: bool,
    /// When the last group commit started.
    last_record: Instant,
    /// A group commit waits for its turn (a `Msg::Flush` will come).
    pub(crate) flush_scheduled: bool,
    /// Group commits that failed in a row.
    pub(crate) failures: u32,
    /// Workers whose iteration finished while too many were waiting (see
    /// `Config::max_unrecorded`): the scheduler hears that they finished
    /// (and starts them again) once the commit on its way is made. While a
    /// large commit is on its way, memory so stays bounded instead of
    /// growing with how fast bodies finish.
    pub(crate) held: Vec<WorkerId>,
}

impl GroupCommit {
    pub(crate) fn new() -> Self {
        GroupCommit {
            pending: Vec::new(),
            committing: false,
            last_record: Instant::now(),
            flush_scheduled: false,
            failures: 0,
            held: Vec::new(),
        }
    }

    /// Whether a group commit may be made now: none is on its way, there
    /// is something to record, and none waits for its turn (unless the
    /// operation is `ending`, which does not wait).
    pub(crate) fn may_commit(&self, ending: bool) -> bool {
        !(self.committing || self.pending.is_empty() || (self.flush_scheduled && !ending))
    }

    /// How long a group commit must wait for its turn, if it must: at most
    /// one per `interval`, unless the operation is `ending`. A wait is
    /// noted as a scheduled flush.
    pub(crate) fn hold_back(&mut self, interval: Duration, ending: bool) -> Option<Duration> {
        let since = self.last_record.elapsed();
        if since < interval && !ending {
            self.flush_scheduled = true;
            Some(interval - since)
        } else {
            None
        }
    }

    /// Whether a worker whose iteration just finished is to be held back,
    /// with at most `cap` iterations waiting.
    pub(crate) fn is_full(&self, cap: usize) -> bool {
        self.pending.len() >= cap
    }

    /// Starts a group commit: takes everything pending.
    pub(crate) fn begin(&mut self) -> Vec<(WorkerId, u64)> {
        self.last_record = Instant::now();
        self.committing = true;
        std::mem::take(&mut self.pending)
    }

    /// A group commit failed: its iterations wait again, ahead of those
    /// that finished meanwhile.
    pub(crate) fn failed(&mut self, mut workers: Vec<(WorkerId, u64)>) {
        workers.append(&mut self.pending);
        self.pending = workers;
        self.failures += 1;
    }

    /// Whether the last finished iterations are to be recorded before the
    /// operation ends: not once three commits in a row failed, nor once
    /// the store is full (`stopped`).
    pub(crate) fn records_before_end(&self, stopped: bool) -> bool {
        !self.pending.is_empty() && self.failures < 3 && !stopped
    }
}
