//! How an operation ended, as a host shows it and as the records keep it.

use pragma_executor_local::{BestScore, FinalStatus, Outcome, Usage};
use serde::{Deserialize, Serialize};

/// How an operation ended, with what was applied: what `pragma run --json`
/// prints as its last line, what the records keep as the outcome, and what
/// a host derives its exit code or display from.
///
/// Serialised as one JSON object: `{"event":"finished","op":…,"status":…,
/// "reason":…,"best":…,"iterations_run":…,"failed_iterations":[…],
/// "conflicts":[…],"usage":{…}}`, with `apply_error` when applying failed,
/// `stopped_early` when a stop rule ended it, and, for an interrupted
/// operation, `iteration` and `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
#[non_exhaustive]
pub struct Summary {
    /// The operation.
    pub op: String,
    /// How it ended.
    pub status: FinalStatus,
    /// The winner, if it succeeded.
    pub best: Option<BestScore>,
    /// Iterations that failed for good, with their last error.
    pub failed_iterations: Vec<FailedIteration>,
    /// Variables changed both by the operation and live, left unapplied
    /// until settled.
    pub conflicts: Vec<String>,
    /// What it consumed.
    pub usage: Usage,
    /// Why the result could not be applied, if it could not.
    pub apply_error: Option<String>,
    /// Why a stop rule (`--patience`, `--target`) ended it before its last
    /// iteration, if one did.
    pub stopped_early: Option<String>,
    /// Problems that did not change the outcome (a record that could not
    /// be written), for the host to show; not serialised.
    pub warnings: Vec<String>,
}

/// An iteration that failed for good.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedIteration {
    /// The iteration.
    pub iteration: u64,
    /// Its last error.
    pub error: String,
}

/// What a summary comes to, for a host's exit code or display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// Succeeded, and the result is applied.
    Applied,
    /// Succeeded; some variables are conflicts left to settle.
    ConflictsLeft,
    /// Succeeded, but the result could not be applied.
    ApplyFailed,
    /// Failed.
    Failed,
    /// Stopped because the store is full; resumable.
    Stopped,
    /// Cancelled; resumable.
    Cancelled,
    /// Suspended by a preemption notice; resumable, with nothing that
    /// finished run again.
    Suspended,
    /// A body asked for interactive input.
    Interrupted,
}

impl Summary {
    /// The summary of an outcome, before anything is applied.
    pub fn from_outcome<State>(outcome: &Outcome<State>) -> Summary {
        Summary {
            op: outcome.op.clone(),
            status: outcome.status.clone(),
            best: outcome.best.as_ref().map(|b| BestScore {
                iteration: b.iteration,
                score: b.score,
            }),
            failed_iterations: outcome
                .failed_iterations
                .iter()
                .map(|(iteration, error)| FailedIteration {
                    iteration: *iteration,
                    error: error.clone(),
                })
                .collect(),
            conflicts: Vec::new(),
            usage: outcome.usage,
            apply_error: None,
            stopped_early: outcome.stopped_early.clone(),
            warnings: Vec::new(),
        }
    }

    /// Why it ended so, for the statuses that have a reason.
    pub fn reason(&self) -> Option<String> {
        match &self.status {
            FinalStatus::Failed { reason } | FinalStatus::Stopped { reason } => {
                Some(reason.clone())
            }
            FinalStatus::Interrupted { iteration, message } => {
                Some(format!("iteration {iteration}: {message}"))
            }
            _ => None,
        }
    }

    /// What it comes to.
    pub fn ending(&self) -> Ending {
        match &self.status {
            FinalStatus::Succeeded if self.apply_error.is_some() => Ending::ApplyFailed,
            FinalStatus::Succeeded if !self.conflicts.is_empty() => Ending::ConflictsLeft,
            FinalStatus::Succeeded => Ending::Applied,
            FinalStatus::Cancelled => Ending::Cancelled,
            FinalStatus::Interrupted { .. } => Ending::Interrupted,
            FinalStatus::Stopped { .. } => Ending::Stopped,
            FinalStatus::Suspended => Ending::Suspended,
            _ => Ending::Failed,
        }
    }

    /// Counts runs that an earlier start of the operation began and never
    /// finished (a batch job requeued mid-run): `lost` as work lost, and
    /// `uncounted` of them, which no record counted, as runs too.
    pub fn add_lost_runs(&mut self, lost: u64, uncounted: u64) {
        self.usage.work_lost += lost;
        self.usage.iterations_run += uncounted;
    }
}

/// The JSON form of a [`Summary`].
#[derive(Serialize, Deserialize)]
struct Wire {
    event: String,
    op: String,
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iteration: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(default)]
    best: Option<BestScore>,
    #[serde(default)]
    iterations_run: u64,
    #[serde(default)]
    failed_iterations: Vec<FailedIteration>,
    #[serde(default)]
    conflicts: Vec<String>,
    #[serde(default)]
    usage: Usage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    apply_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stopped_early: Option<String>,
}

impl From<Summary> for Wire {
    fn from(summary: Summary) -> Wire {
        let reason = summary.reason();
        let (iteration, message) = match &summary.status {
            FinalStatus::Interrupted { iteration, message } => {
                (Some(*iteration), Some(message.clone()))
            }
            _ => (None, None),
        };
        Wire {
            event: "finished".to_owned(),
            op: summary.op,
            status: summary.status.name().to_owned(),
            reason,
            iteration,
            message,
            best: summary.best,
            iterations_run: summary.usage.iterations_run,
            failed_iterations: summary.failed_iterations,
            conflicts: summary.conflicts,
            usage: summary.usage,
            apply_error: summary.apply_error,
            stopped_early: summary.stopped_early,
        }
    }
}

impl TryFrom<Wire> for Summary {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Summary, String> {
        let reason = || wire.reason.clone().unwrap_or_default();
        let status = match wire.status.as_str() {
            "succeeded" => FinalStatus::Succeeded,
            "failed" => FinalStatus::Failed { reason: reason() },
            "stopped" => FinalStatus::Stopped { reason: reason() },
            "cancelled" => FinalStatus::Cancelled,
            "suspended" => FinalStatus::Suspended,
            "interrupted" => FinalStatus::Interrupted {
                iteration: wire.iteration.unwrap_or_default(),
                message: wire.message.clone().unwrap_or_else(reason),
            },
            other => return Err(format!("`{other}` is not a status an operation ends with")),
        };
        Ok(Summary {
            op: wire.op,
            status,
            best: wire.best,
            failed_iterations: wire.failed_iterations,
            conflicts: wire.conflicts,
            usage: wire.usage,
            apply_error: wire.apply_error,
            stopped_early: wire.stopped_early,
            warnings: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(status: FinalStatus) -> Summary {
        Summary {
            op: "op-1".into(),
            status,
            best: Some(BestScore {
                iteration: 3,
                score: Some(0.5),
            }),
            failed_iterations: vec![FailedIteration {
                iteration: 1,
                error: "exit 1".into(),
            }],
            conflicts: vec!["notes".into()],
            usage: {
                let mut usage = Usage::default();
                usage.iterations_run = 7;
                usage
            },
            apply_error: None,
            stopped_early: Some("no better score in 3 checkpoints after iteration 2".into()),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn every_status_round_trips_through_its_json_line() {
        for status in [
            FinalStatus::Succeeded,
            FinalStatus::Failed {
                reason: "no valid result".into(),
            },
            FinalStatus::Stopped {
                reason: "No space left on device".into(),
            },
            FinalStatus::Cancelled,
            FinalStatus::Suspended,
            FinalStatus::Interrupted {
                iteration: 2,
                message: "waits to read its standard input".into(),
            },
        ] {
            let summary = summary(status);
            let line = serde_json::to_value(&summary).unwrap();
            assert_eq!(line["event"], "finished");
            assert_eq!(line["iterations_run"], 7);
            assert_eq!(line["failed_iterations"][0]["iteration"], 1);
            let back: Summary = serde_json::from_value(line).unwrap();
            assert_eq!(back, summary);
        }
    }

    #[test]
    fn the_reason_of_an_interrupted_operation_names_the_iteration() {
        let line = serde_json::to_value(summary(FinalStatus::Interrupted {
            iteration: 2,
            message: "asked".into(),
        }))
        .unwrap();
        assert_eq!(line["status"], "interrupted");
        assert_eq!(line["reason"], "iteration 2: asked");
    }

    #[test]
    fn endings_follow_status_conflicts_and_apply_errors() {
        let mut applied = summary(FinalStatus::Succeeded);
        assert_eq!(applied.ending(), Ending::ConflictsLeft);
        applied.conflicts.clear();
        assert_eq!(applied.ending(), Ending::Applied);
        applied.apply_error = Some("disk full".into());
        assert_eq!(applied.ending(), Ending::ApplyFailed);
        assert_eq!(summary(FinalStatus::Cancelled).ending(), Ending::Cancelled);
    }

    #[test]
    fn an_unknown_status_is_an_error_naming_it() {
        let error =
            serde_json::from_str::<Summary>(r#"{"event":"finished","op":"o","status":"exploded"}"#)
                .unwrap_err();
        assert!(error.to_string().contains("`exploded`"), "{error}");
    }
}
