//! How far an operation got: the iterations that finished, the ones given
//! up on, and why the failing ones failed.

use std::collections::BTreeMap;

use rangemap::RangeSet;

/// What has run, as the records say it (and what failed meanwhile).
#[derive(Default)]
pub(crate) struct Progress {
    /// Parallel: iterations recorded as finished, as ranges (a few,
    /// however many iterations), and how many they are.
    pub(crate) finished: RangeSet<u64>,
    pub(crate) finished_count: u64,
    /// Repeat: iterations covered by the last checkpoint.
    pub(crate) iterations_done: u64,
    /// Iterations given up on, with their last error.
    pub(crate) abandoned: Vec<(u64, String)>,
    /// The last error of each iteration that failed, to name when it is
    /// given up on.
    pub(crate) last_error: BTreeMap<u64, String>,
}

impl Progress {
    /// `iterations` are recorded as finished now.
    pub(crate) fn record_finished(&mut self, iterations: impl IntoIterator<Item = u64>) {
        for iteration in iterations {
            if !self.finished.contains(&iteration) {
                self.finished.insert(iteration..iteration + 1);
                self.finished_count += 1;
            }
        }
    }

    /// Gives up on `iteration`, with its last error (none: its workers
    /// were lost).
    pub(crate) fn abandon(&mut self, iteration: u64) {
        let error = self
            .last_error
            .remove(&iteration)
            .unwrap_or_else(|| "preempted too often".into());
        self.abandoned.push((iteration, error));
    }
}
