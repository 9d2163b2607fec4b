//! How an operation ends: what the scheduler said, what cut it short (an
//! interactive prompt, a full store), and where the outcome goes.

use pragma_scheduler::{Conclusion, FailReason};

use crate::config::Config;
use tokio::sync::oneshot;

use super::Selection;
use crate::report::{FinalStatus, Outcome};

/// The makings of an operation's final status.
pub(crate) struct Ending<St> {
    /// What the scheduler says the operation came to, once it has.
    pub(crate) outcome: Option<Conclusion>,
    /// The iteration whose body asked for interactive input, and what it
    /// said.
    pub(crate) interrupted: Option<(u64, String)>,
    /// Why the operation stopped (its store is full), if it did.
    pub(crate) stopped: Option<String>,
    /// Where the outcome goes; `None` once it went.
    pub(crate) done: Option<oneshot::Sender<Outcome<St>>>,
}

impl<St> Ending<St> {
    pub(crate) fn new(done: oneshot::Sender<Outcome<St>>) -> Self {
        Ending {
            outcome: None,
            interrupted: None,
            stopped: None,
            done: Some(done),
        }
    }

    /// Whether the scheduler has said that the operation ends.
    pub(crate) fn is_ending(&self) -> bool {
        self.outcome.is_some()
    }

    /// The final status of an operation the scheduler ended with
    /// `outcome`: an interruption or a full store says more than the
    /// cancel they caused, and a success needs a valid candidate.
    pub(crate) fn status(
        &self,
        outcome: Conclusion,
        selection: &Selection<St>,
        config: &Config,
    ) -> FinalStatus {
        match (outcome, &self.interrupted) {
            (_, Some((iteration, message))) => FinalStatus::Interrupted {
                iteration: *iteration,
                message: message.clone(),
            },
            (Conclusion::Cancelled, None) if self.stopped.is_some() => FinalStatus::Stopped {
                reason: self.stopped.clone().unwrap_or_default(),
            },
            (Conclusion::Cancelled, None) => FinalStatus::Cancelled,
            (Conclusion::Suspended, None) => FinalStatus::Suspended,
            (Conclusion::Failed(reason), None) => FinalStatus::Failed {
                reason: failure(reason, config),
            },
            (Conclusion::Succeeded, None) => {
                selection.no_result().unwrap_or(FinalStatus::Succeeded)
            }
        }
    }
}

/// Why an operation failed, naming the budget it ran out of where the
/// embedder sets it.
fn failure(reason: FailReason, config: &Config) -> String {
    match reason {
        FailReason::TooManyPreemptions { .. } => format!(
            "{reason}: its worker was lost {} times, the budget of preemptions \
             (`Config::preemptions`)",
            u64::from(config.preemptions) + 1
        ),
        FailReason::AttemptCapReached { .. } => {
            format!("{reason} (`Config::max_attempts`)")
        }
        _ => reason.to_string(),
    }
}
