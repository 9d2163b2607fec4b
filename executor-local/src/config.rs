//! How the executor runs operations: worker slots, retry budgets, how often
//! parallel results are recorded.

/// How the executor runs operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Worker slots of the default backend (ignored with a custom backend,
    /// which says its own capacity).
    pub workers: u64,
    /// Retries of an iteration whose body failed.
    pub retries: u32,
    /// Re-runs of an iteration whose worker was lost.
    pub preemptions: u32,
    /// The most iteration starts one operation may make (`None`: no cap).
    pub max_attempts: Option<u64>,
    /// Parallel: finished iterations are recorded durably at most this
    /// often (a group commit). A crash loses at most the iterations
    /// finished since the last record; a longer interval costs less.
    pub record_interval: std::time::Duration,
    /// Parallel: how many finished iterations of one operation may wait
    /// for a group commit (while a large one is on its way) before the
    /// workers that finish more are held back until it is made. It bounds
    /// the coordinator's memory (some tens of bytes per waiting iteration)
    /// whatever the number of iterations.
    pub max_unrecorded: usize,
}

impl Default for Config {
    /// As many workers as the machine has cores, 2 retries, 10 preemptions,
    /// records every 20 ms, at most 262,144 finished iterations waiting for
    /// a record.
    fn default() -> Self {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            retries: 2,
            preemptions: 10,
            max_attempts: None,
            record_interval: std::time::Duration::from_millis(20),
            max_unrecorded: 1 << 18,
        }
    }
}

impl Config {
    /// With `workers` worker slots for the default backend.
    pub fn workers(mut self, workers: u64) -> Self {
        self.workers = workers;
        self
    }

    /// With `retries` retries of an iteration whose body failed.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// With `preemptions` re-runs of an iteration whose worker was lost.
    pub fn preemptions(mut self, preemptions: u32) -> Self {
        self.preemptions = preemptions;
        self
    }

    /// With at most `max_attempts` iteration starts per operation.
    pub fn max_attempts(mut self, max_attempts: Option<u64>) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Recording finished parallel iterations at most every `interval`.
    pub fn record_interval(mut self, interval: std::time::Duration) -> Self {
        self.record_interval = interval;
        self
    }

    /// With at most `max_unrecorded` finished iterations of an operation
    /// waiting for a record before workers are held back (at least 1).
    pub fn max_unrecorded(mut self, max_unrecorded: usize) -> Self {
        self.max_unrecorded = max_unrecorded.max(1);
        self
    }
}
