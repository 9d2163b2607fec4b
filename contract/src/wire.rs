//! What a job run elsewhere gives back, and the plain JSON it travels as.

use pragma_checkpoint::Key;
use pragma_selector::{Evaluation, InvalidReason};
use serde::{Deserialize, Serialize};

use crate::host::RunError;

/// The output of a job that ran elsewhere (see
/// [`ExecutionBackend`](crate::ExecutionBackend)).
#[derive(Debug)]
pub struct RemoteOutput {
    /// Where the resulting state is (its snapshot, written with
    /// [`Host::snapshot`](crate::Host::snapshot)), or why the run failed.
    pub result: Result<RemoteState, RunError>,
    /// The score of the resulting state, if the spec had an expression.
    pub evaluation: Option<Evaluation>,
    /// Seconds the worker spent on it.
    pub seconds: f64,
    /// Earlier runs of the job that were cut short where it ran (the
    /// cluster requeued it, its node failed): counted in the operation's
    /// usage as runs and as lost work.
    pub lost_runs: u64,
}

impl RemoteOutput {
    /// The output of a run that failed before it produced anything (its
    /// worker could not reach the store, say), after `seconds`.
    pub fn failed(error: RunError, seconds: f64) -> RemoteOutput {
        RemoteOutput {
            result: Err(error),
            evaluation: None,
            seconds,
            lost_runs: 0,
        }
    }
}

/// Where a job that ran elsewhere left its resulting state's snapshot.
///
/// Either way it is not durable until the executor records it: a result
/// lost before that (the coordinator died) only means the iteration runs
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteState {
    /// In the checkpoint store, under this key
    /// ([`run_spec`](crate::run_spec)); the executor restores it, then
    /// deletes the key.
    Stored(Key),
    /// Handed back with the output, as bytes
    /// ([`run_spec_returning`](crate::run_spec_returning)): a cluster
    /// engine that returns values (Ray's object store) spares the store a
    /// write, a read and a delete per iteration.
    Returned(Vec<u8>),
}

/// A [`RemoteOutput`] as it travels between processes (a file in a shared
/// store, say): plain JSON.
///
/// ```
/// use pragma_contract::{RemoteOutput, RemoteReport, RemoteState, RunError};
///
/// let output = RemoteOutput::failed(RunError::Failed("boom".into()), 0.5);
/// let json = serde_json::to_string(&RemoteReport::from(&output)).unwrap();
/// assert_eq!(json, r#"{"state":null,"error":{"kind":"failed","message":"boom"},"score":null,"invalid":null,"seconds":0.5,"lost_runs":0}"#);
/// let back: RemoteReport = serde_json::from_str(&json).unwrap();
/// assert_eq!(back.into_output(None).unwrap().result, Err(RunError::Failed("boom".into())));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteReport {
    /// The key of the resulting state, if the run succeeded.
    pub state: Option<String>,
    /// Why the run failed, if it did.
    pub error: Option<RunError>,
    /// The score as text (`"0.93"`, `"NaN"`), if it was scored.
    pub score: Option<String>,
    /// Why it could not be scored, if it could not.
    pub invalid: Option<InvalidReason>,
    /// Seconds the worker spent on it.
    pub seconds: f64,
    /// Earlier runs cut short (see [`RemoteOutput::lost_runs`]).
    #[serde(default)]
    pub lost_runs: u64,
    /// The resulting state travels beside the report, as bytes
    /// ([`RemoteState::Returned`]; see [`RemoteReport::into_output`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub returned: bool,
}

/// Why a [`RemoteReport`] does not describe an output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The state's key is not a valid key.
    #[error("the report's state key: {0}")]
    Key(String),
    /// The score is not a number.
    #[error("the report's score `{score}`: {problem}")]
    Score {
        /// The score's text.
        score: String,
        /// Why it does not read.
        problem: String,
    },
    /// It names a stored state, and bytes came beside it too.
    #[error("the report names a stored state, and bytes came beside it")]
    StoredAndReturned,
    /// It says its state comes beside it, and none came.
    #[error("the report's state was to come beside it, and did not")]
    ReturnedMissing,
    /// It names neither a state nor an error.
    #[error("the report names neither a state nor an error")]
    Empty,
}

impl From<&RemoteOutput> for RemoteReport {
    fn from(output: &RemoteOutput) -> RemoteReport {
        let (state, error) = match &output.result {
            Ok(RemoteState::Stored(key)) => (Some(key.to_string()), None),
            Ok(RemoteState::Returned(_)) => (None, None),
            Err(error) => (None, Some(error.clone())),
        };
        let (score, invalid) = match &output.evaluation {
            Some(Evaluation::Score(score)) => (Some(format!("{score:?}")), None),
            Some(Evaluation::Invalid(reason)) => (None, Some(reason.clone())),
            None => (None, None),
        };
        RemoteReport {
            state,
            error,
            score,
            invalid,
            seconds: output.seconds,
            lost_runs: output.lost_runs,
            returned: matches!(output.result, Ok(RemoteState::Returned(_))),
        }
    }
}

impl TryFrom<RemoteReport> for RemoteOutput {
    type Error = ReportError;

    /// Fails if the report names a bad key, has an unreadable score, or
    /// says neither what it produced nor how it failed (a report whose
    /// state travels beside it: see [`RemoteReport::into_output`]).
    fn try_from(report: RemoteReport) -> Result<RemoteOutput, ReportError> {
        report.into_output(None)
    }
}

impl RemoteReport {
    /// The output the report describes, with `returned`, the resulting
    /// state's bytes if they travelled beside it ([`RemoteReport::returned`]).
    /// Fails as [`RemoteOutput::try_from`] does, or if the report and the
    /// bytes do not go together.
    pub fn into_output(self, returned: Option<Vec<u8>>) -> Result<RemoteOutput, ReportError> {
        let result = match (self.state, self.error) {
            (_, Some(error)) => Err(error),
            (Some(_), None) if returned.is_some() => return Err(ReportError::StoredAndReturned),
            (Some(key), None) => Ok(RemoteState::Stored(
                Key::parse(&key).map_err(|e| ReportError::Key(e.to_string()))?,
            )),
            (None, None) => match (self.returned, returned) {
                (true, Some(bytes)) => Ok(RemoteState::Returned(bytes)),
                (true, None) => return Err(ReportError::ReturnedMissing),
                (false, _) => return Err(ReportError::Empty),
            },
        };
        let evaluation = match (self.score, self.invalid) {
            (_, Some(reason)) => Some(Evaluation::Invalid(reason)),
            (Some(text), None) => Some(Evaluation::Score(text.parse::<f64>().map_err(|e| {
                ReportError::Score {
                    problem: e.to_string(),
                    score: text,
                }
            })?)),
            (None, None) => None,
        };
        Ok(RemoteOutput {
            result,
            evaluation,
            seconds: self.seconds,
            lost_runs: self.lost_runs,
        })
    }
}
