//! What an operation asks for: its plan and its budgets.

use serde::{Deserialize, Serialize};

/// How an operation's iterations run. Plain numbers: the scheduler does not
/// know the directive language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Plan {
    /// Iterations `0..iterations` one after another on one worker; a
    /// checkpoint after every `checkpoint_period` iterations and after the last.
    Repeat {
        /// How many iterations (at least 1).
        iterations: u64,
        /// Checkpoint after every this many iterations (at least 1).
        checkpoint_period: u64,
    },
    /// Iterations `0..iterations`, each from the state at submission, on at
    /// most `max_workers` workers at once (`None`: as many as the pool has).
    Parallel {
        /// How many iterations (at least 1).
        iterations: u64,
        /// At most this many in flight (at least 1), or the pool's capacity.
        max_workers: Option<u64>,
    },
    /// One plain background run (iteration 0).
    Async,
}

impl Plan {
    /// How many iterations the plan has.
    pub fn iterations(&self) -> u64 {
        match *self {
            Plan::Repeat { iterations, .. } | Plan::Parallel { iterations, .. } => iterations,
            Plan::Async => 1,
        }
    }

    /// Checks the numbers; the scheduler refuses an invalid plan.
    pub fn validate(&self) -> Result<(), InvalidPlan> {
        match *self {
            Plan::Repeat {
                iterations,
                checkpoint_period,
            } => {
                if iterations == 0 {
                    return Err(InvalidPlan("a repeat plan needs at least 1 iteration"));
                }
                if checkpoint_period == 0 {
                    return Err(InvalidPlan("a checkpoint period must be at least 1"));
                }
            }
            Plan::Parallel {
                iterations,
                max_workers,
            } => {
                if iterations == 0 {
                    return Err(InvalidPlan("a parallel plan needs at least 1 iteration"));
                }
                if max_workers == Some(0) {
                    return Err(InvalidPlan("a parallel plan needs at least 1 worker"));
                }
            }
            Plan::Async => {}
        }
        Ok(())
    }
}

/// A plan with numbers the scheduler cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid plan: {0}")]
pub struct InvalidPlan(pub(crate) &'static str);

/// How much may go wrong before an iteration or an operation gives up.
///
/// Code failures and preemptions have separate budgets: a preemption never
/// uses up a retry of the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budgets {
    /// Retries of one iteration after its code failed (0: no retry).
    pub retries: u32,
    /// Restarts of one iteration after its worker was lost.
    pub preemptions: u32,
    /// The most iteration starts the whole operation may make, retries and
    /// re-runs included (`None`: no cap).
    pub max_attempts: Option<u64>,
}

impl Default for Budgets {
    /// 2 retries and 10 preemptions per iteration, no cap on attempts.
    fn default() -> Self {
        Budgets {
            retries: 2,
            preemptions: 10,
            max_attempts: None,
        }
    }
}
