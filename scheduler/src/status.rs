//! What an operation is doing, as a user sees it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why an operation waits for workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum WaitReason {
    /// The pool has no worker slots at all.
    CapacityZero,
    /// All slots are in use: it has `missing` fewer workers than the
    /// `wanted` it could use; `ahead` earlier operations wait too.
    WaitingForWorkers {
        /// Workers it could use but does not have.
        missing: u64,
        /// Workers it could use in all.
        wanted: u64,
        /// Earlier operations that also wait (they are served first).
        ahead: u64,
    },
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::CapacityZero => f.write_str("capacity 0"),
            WaitReason::WaitingForWorkers {
                missing,
                wanted,
                ahead,
            } => {
                write!(f, "waiting for {missing} of {wanted} workers")?;
                if *ahead > 0 {
                    write!(f, " ({ahead} earlier operations first)")?;
                }
                Ok(())
            }
        }
    }
}

/// Why an operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FailReason {
    /// A repeat iteration failed more often than its retry budget allows.
    IterationFailed {
        /// The iteration.
        iteration: u64,
    },
    /// A repeat iteration was preempted more often than its budget allows.
    TooManyPreemptions {
        /// The iteration.
        iteration: u64,
    },
    /// The operation reached its cap on iteration starts.
    AttemptCapReached {
        /// The cap.
        attempts: u64,
    },
    /// No iteration of a parallel operation succeeded.
    NoIterationSucceeded,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::IterationFailed { iteration } => {
                write!(f, "iteration {iteration} failed after all its retries")
            }
            FailReason::TooManyPreemptions { iteration } => {
                write!(f, "iteration {iteration} was preempted too often")
            }
            FailReason::AttemptCapReached { attempts } => {
                write!(
                    f,
                    "the operation reached its cap of {attempts} iteration starts"
                )
            }
            FailReason::NoIterationSucceeded => f.write_str("no iteration succeeded"),
        }
    }
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Conclusion {
    /// Every iteration ended; for parallel, at least one succeeded (the
    /// others are reported by [`Action::IterationAbandoned`](crate::Action)).
    Succeeded,
    /// It cannot go on.
    Failed(FailReason),
    /// The user cancelled it.
    Cancelled,
    /// A preemption notice suspended it ([`Event::Suspend`](crate::Event)):
    /// what ran is kept (a repeat's last finished iteration checkpointed),
    /// and it resumes from there.
    Suspended,
}

/// Counters of an operation's progress.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Iterations finished for good: repeat, covered by a committed
    /// checkpoint; parallel, succeeded.
    pub done: u64,
    /// Iterations running now.
    pub in_flight: u64,
    /// Iterations abandoned after their budget.
    pub failed: u64,
    /// Iteration starts so far, retries and re-runs included.
    pub attempts: u64,
    /// Iterations whose work was lost: finished repeat iterations rewound
    /// by a preemption or failure, and runs cut short by a lost worker.
    pub lost: u64,
    /// The iterations the plan has.
    pub total: u64,
    /// Iterations that ran to their end, covered by a checkpoint or not:
    /// for a repeat, `done` and those run since its last checkpoint (which
    /// a preemption may still rewind); for parallel, `done`. What a
    /// progress bar shows; `done` is what is kept.
    #[serde(default)]
    pub finished: u64,
}

/// The one visible state an operation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    /// Submitted, not started yet.
    Queued {
        /// Why it waits.
        reason: WaitReason,
        /// Its counters (all zero but the total).
        progress: Progress,
    },
    /// At least one worker is busy with it.
    Running {
        /// Its counters.
        progress: Progress,
    },
    /// Started before, now without workers (preempted), waiting for capacity.
    Suspended {
        /// Why it waits.
        reason: WaitReason,
        /// Its counters.
        progress: Progress,
    },
    /// It ended.
    Ended {
        /// How.
        outcome: Conclusion,
        /// Its final counters.
        progress: Progress,
    },
}

impl Phase {
    /// The counters, whatever the state.
    pub fn progress(&self) -> Progress {
        match *self {
            Phase::Queued { progress, .. }
            | Phase::Running { progress }
            | Phase::Suspended { progress, .. }
            | Phase::Ended { progress, .. } => progress,
        }
    }
}
