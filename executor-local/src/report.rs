//! What the executor tells: events, status, outcome and usage.

use serde::{Deserialize, Serialize};

/// Something that happened to an operation, in order. Serialisable, so a
/// host can show or forward it (the `pragma` command prints JSON Lines).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Submitted; waiting for workers.
    Queued {
        /// The operation.
        op: String,
        /// Why it waits.
        reason: String,
    },
    /// Its first iteration started.
    Started {
        /// The operation.
        op: String,
    },
    /// Resumed from its last checkpoint by a new executor.
    Resumed {
        /// The operation.
        op: String,
        /// Iterations already done (repeat: checkpointed; parallel: recorded).
        iterations_done: u64,
    },
    /// A newer checkpoint did not verify (damaged, cut short, deleted) and
    /// was skipped: the operation resumes from an earlier one, so more
    /// work runs again. Comes before [`Event::Resumed`].
    CheckpointSkipped {
        /// The operation.
        op: String,
        /// The skipped checkpoint's generation.
        generation: u64,
        /// What is wrong with it.
        problem: String,
    },
    /// A failed or lost iteration starts again (attempt 2 and later).
    Retrying {
        /// The operation.
        op: String,
        /// The iteration.
        iteration: u64,
        /// Which start of it this is.
        attempt: u32,
    },
    /// An iteration started.
    IterationStarted {
        /// The operation.
        op: String,
        /// The iteration.
        iteration: u64,
        /// Which start of it, from 1.
        attempt: u32,
    },
    /// An iteration finished; for parallel, scored (a `null` score is an
    /// invalid candidate, with the reason).
    IterationFinished {
        /// The operation.
        op: String,
        /// The iteration.
        iteration: u64,
        /// Its score, if it is a candidate and valid.
        #[serde(with = "score_json", default)]
        score: Option<f64>,
        /// Why it is not a valid candidate, if it is one and is not valid.
        invalid: Option<String>,
    },
    /// An iteration failed; it runs again if its budget allows.
    IterationFailed {
        /// The operation.
        op: String,
        /// The iteration.
        iteration: u64,
        /// What went wrong.
        error: String,
    },
    /// A checkpoint (repeat) or a record of finished iterations (parallel)
    /// is durable.
    CheckpointCommitted {
        /// The operation.
        op: String,
        /// The checkpoint's generation in the store.
        generation: u64,
        /// Iterations it covers.
        iterations_done: u64,
        /// The score of a repeat checkpoint.
        #[serde(with = "score_json", default)]
        score: Option<f64>,
        /// Parallel: the iterations this commit recorded as finished.
        recorded: Vec<u64>,
    },
    /// A worker was lost; its iteration runs again elsewhere.
    WorkerLost {
        /// The operation.
        op: String,
        /// The iteration it was running.
        iteration: Option<u64>,
    },
    /// The body asked for interactive input; the operation stops.
    Interrupted {
        /// The operation.
        op: String,
        /// The iteration that asked.
        iteration: u64,
        /// What it asked.
        message: String,
    },
    /// A preemption notice came ([`Handle::suspend`](crate::Handle::suspend)):
    /// nothing starts any more; the iterations running may finish within
    /// the grace period.
    Suspending {
        /// The operation.
        op: String,
        /// The grace period, in seconds.
        grace_seconds: f64,
    },
    /// A stop rule (`--patience`, `--target`) was met: no iteration starts
    /// any more, those running are stopped, and the operation ends with
    /// its best so far.
    StoppedEarly {
        /// The operation.
        op: String,
        /// Which rule, and where (`no better score in 3 checkpoints after
        /// iteration 29 (`--patience`)`).
        reason: String,
    },
    /// The user cancelled the operation.
    Cancelled {
        /// The operation.
        op: String,
    },
    /// The operation ended.
    Finished {
        /// The operation.
        op: String,
        /// How.
        status: FinalStatus,
        /// The winner, if any.
        best: Option<BestScore>,
    },
}

/// The best candidate's iteration and score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestScore {
    /// The iteration (repeat: the last iteration the checkpoint covers).
    pub iteration: u64,
    /// Its score (`None` for `async`, which has no selection).
    #[serde(with = "score_json", default)]
    pub score: Option<f64>,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinalStatus {
    /// It produced a best state.
    Succeeded,
    /// It could not: the reason says why.
    Failed {
        /// Why.
        reason: String,
    },
    /// The user cancelled it; its last checkpoint is kept, nothing is applied.
    Cancelled,
    /// The body asked for interactive input; nothing is applied.
    Interrupted {
        /// The iteration that asked.
        iteration: u64,
        /// What it asked.
        message: String,
    },
    /// The operation could not go on because its store is full: a
    /// checkpoint could not be saved. Its last checkpoint stays, nothing is
    /// applied, and [`Executor::resume`](crate::Executor::resume) goes on
    /// from there once there is room.
    Stopped {
        /// What could not be saved, and why.
        reason: String,
    },
    /// A preemption notice suspended it ([`Handle::suspend`](crate::Handle::suspend)):
    /// the iterations running then finished within the grace period (or
    /// were stopped at its end), a repeat checkpointed its last finished
    /// iteration; nothing is applied, and
    /// [`Executor::resume`](crate::Executor::resume) goes on from there
    /// with nothing that finished run again.
    Suspended,
}

impl FinalStatus {
    /// The status's name: `succeeded`, `failed`, `cancelled`,
    /// `interrupted`, `stopped`, `suspended`.
    pub fn name(&self) -> &'static str {
        match self {
            FinalStatus::Succeeded => "succeeded",
            FinalStatus::Failed { .. } => "failed",
            FinalStatus::Cancelled => "cancelled",
            FinalStatus::Interrupted { .. } => "interrupted",
            FinalStatus::Stopped { .. } => "stopped",
            FinalStatus::Suspended => "suspended",
        }
    }

    /// Whether the operation ended short of its end, at its last
    /// checkpoint, to go on when [resumed](crate::Executor::resume):
    /// cancelled, stopped by a full store, or suspended by a preemption
    /// notice.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            FinalStatus::Cancelled | FinalStatus::Stopped { .. } | FinalStatus::Suspended
        )
    }
}

/// What an operation consumed, for billing. Counters missing from a
/// serialised form read as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Usage {
    /// Time workers spent on its iterations, in seconds.
    pub worker_seconds: f64,
    /// Iteration starts, retries and re-runs after preemption included.
    pub iterations_run: u64,
    /// Iterations whose work was lost to preemption or crashes.
    pub work_lost: u64,
    /// Bytes written to checkpoints.
    pub bytes_checkpointed: u64,
}

/// A candidate's score as the outcome reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// The iteration.
    pub iteration: u64,
    /// Its score, if valid.
    #[serde(with = "score_json", default)]
    pub score: Option<f64>,
    /// Why it is invalid, if it is.
    pub invalid: Option<String>,
}

/// The result of an operation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Outcome<State> {
    /// The operation.
    pub op: String,
    /// How it ended.
    pub status: FinalStatus,
    /// The best candidate: its iteration, score and state (without the
    /// iteration variable). `None` unless it succeeded, or was cancelled
    /// with a candidate (its best so far, which a host applies only if its
    /// user asks for it).
    pub best: Option<Best<State>>,
    /// How many candidates were scored. They are in the store, not here
    /// (an operation may have millions): read them, in the order they were
    /// scored, with [`Executor::candidates`](crate::Executor::candidates).
    pub candidate_count: u64,
    /// Iterations that failed for good, with the last error.
    pub failed_iterations: Vec<(u64, String)>,
    /// What it consumed.
    pub usage: Usage,
    /// Why a stop rule (`--patience`, `--target`) ended it before its last
    /// iteration, if one did: `no better score in 3 checkpoints after
    /// iteration 29 (`--patience`)`.
    pub stopped_early: Option<String>,
}

impl<State> Outcome<State> {
    /// An outcome of `op` that ended as `status`, with no best state, no
    /// candidates, no failures and no usage: the executor makes outcomes;
    /// this is for tests of code that reads them (set the other fields
    /// after).
    ///
    /// ```
    /// use pragma_executor_local::{Best, FinalStatus, Outcome};
    /// let mut outcome = Outcome::new("op-1", FinalStatus::Succeeded);
    /// outcome.best = Some(Best { iteration: 3, score: Some(0.9), state: "model" });
    /// assert_eq!(outcome.best.unwrap().state, "model");
    /// ```
    pub fn new(op: &str, status: FinalStatus) -> Outcome<State> {
        Outcome {
            op: op.to_owned(),
            status,
            best: None,
            candidate_count: 0,
            failed_iterations: Vec::new(),
            usage: Usage::default(),
            stopped_early: None,
        }
    }
}

/// The winning state.
#[derive(Debug, Clone)]
pub struct Best<State> {
    /// Its iteration.
    pub iteration: u64,
    /// Its score (`None` for `async`).
    pub score: Option<f64>,
    /// The state.
    pub state: State,
}

/// An operation's state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Queued, running, suspended or ended, with the counters.
    pub schedule: pragma_scheduler::Phase,
    /// The best so far.
    pub best: Option<BestScore>,
}

/// What the store says about an operation, for status and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OperationSummary {
    /// The operation.
    pub op: String,
    /// Its directive (in JSON: its canonical form).
    #[serde(with = "pragma_parse::canonical")]
    pub directive: pragma_parse::Directive,
    /// How it ended; `None` while it has not (running, or interrupted by a
    /// crash and waiting to be resumed).
    pub status: Option<FinalStatus>,
    /// The iterations it has.
    pub iterations: u64,
    /// Iterations done for good (repeat: checkpointed; parallel: recorded).
    pub done: u64,
    /// The best so far.
    pub best: Option<BestScore>,
    /// How many candidates were scored; read them with
    /// [`Executor::candidates`](crate::Executor::candidates).
    pub candidate_count: u64,
    /// Whether the candidates are checkpoints (repeat) or iterations.
    pub candidates_are_checkpoints: bool,
    /// Iterations that failed for good.
    pub failed_iterations: Vec<(u64, String)>,
    /// What it consumed.
    pub usage: Usage,
    /// Why a stop rule ended it early, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
}

/// Scores in JSON: a number, or for an infinite score (a valid score: it
/// ranks beyond every finite one) the text `"inf"` or `"-inf"`, which JSON
/// numbers cannot hold; `null` when there is none. Either form reads back.
///
/// ```
/// use pragma_executor_local::BestScore;
/// let best = BestScore { iteration: 1, score: Some(f64::INFINITY) };
/// let json = serde_json::to_string(&best).unwrap();
/// assert_eq!(json, r#"{"iteration":1,"score":"inf"}"#);
/// assert_eq!(serde_json::from_str::<BestScore>(&json).unwrap(), best);
/// let finite: BestScore = serde_json::from_str(r#"{"iteration":2,"score":0.5}"#).unwrap();
/// assert_eq!(finite.score, Some(0.5));
/// ```
pub mod score_json {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `score` as a number, `"inf"`/`"-inf"`, or `null`.
    pub fn serialize<S: Serializer>(score: &Option<f64>, out: S) -> Result<S::Ok, S::Error> {
        match score {
            Some(s) if s.is_infinite() => out.serialize_str(if *s > 0.0 { "inf" } else { "-inf" }),
            Some(s) => out.serialize_f64(*s),
            None => out.serialize_none(),
        }
    }

    /// Reads a number, a score's text (`"inf"`, `"-inf"`, `"nan"`, ...),
    /// or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Number(f64),
            Text(String),
        }
        match Option::<Either>::deserialize(input)? {
            None => Ok(None),
            Some(Either::Number(n)) => Ok(Some(n)),
            Some(Either::Text(text)) => pragma_selector::parse_score(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}
