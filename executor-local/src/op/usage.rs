//! What an operation used: worker time, runs, lost work, bytes written;
//! counted across resumes.

use crate::report::Usage;

/// An operation's usage, including what earlier runs of it used.
#[derive(Default)]
pub(crate) struct UsageCount {
    /// Everything so far: what every record carries.
    pub(crate) total: Usage,
    /// What earlier runs of it used (before a resume), to which this run's
    /// counts are added.
    before: Usage,
    /// Runs lost where a backend ran jobs (see `JobResult::lost_runs`).
    lost_elsewhere: u64,
    /// Runs that may have been running at the last refresh.
    pub(crate) in_flight: u64,
}

impl UsageCount {
    /// Goes on from a record's usage; its `pending` runs (counted, their
    /// results not held: see `Record::pending_runs`) are lost work now.
    pub(crate) fn resume_from(&mut self, mut usage: Usage, pending: u64) {
        usage.work_lost += pending;
        self.total = usage;
        self.before = usage;
    }

    /// A job that took `seconds`, after `lost_runs` runs of it that were
    /// cut short where it ran.
    pub(crate) fn add_job(&mut self, seconds: f64, lost_runs: u64) {
        self.total.worker_seconds += seconds;
        self.lost_elsewhere += lost_runs;
    }

    /// A commit of `bytes` bytes.
    pub(crate) fn add_bytes(&mut self, bytes: u64) {
        self.total.bytes_checkpointed += bytes;
    }

    /// Brings the usage up to the scheduler's count of its runs, so that
    /// every record carries it (a resume after a crash starts from there);
    /// of its runs in flight, at most `running` may be running (a backend
    /// that batches holds some it has not started).
    pub(crate) fn refresh(&mut self, progress: Option<pragma_scheduler::Progress>, running: u64) {
        if let Some(progress) = progress {
            self.in_flight = progress.in_flight.min(running);
            self.total.iterations_run =
                self.before.iterations_run + progress.attempts + self.lost_elsewhere;
            self.total.work_lost = self.before.work_lost + progress.lost + self.lost_elsewhere;
        }
    }
}
