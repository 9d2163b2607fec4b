//! Where iterations run.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_checkpoint::{CheckpointLog, Key, Store};
use pragma_scheduler::WorkerId;
use pragma_selector::Evaluation;
use serde::{Deserialize, Serialize};

use crate::host::{Host, IterationContext, RunError};

/// The result of a job, opaque to the backend.
pub type JobOutput = Box<dyn Any + Send>;

/// One iteration's work, packaged by the executor: run it to get its output.
pub type Job = Pin<Box<dyn Future<Output = JobOutput> + Send>>;

/// Runs iterations on workers.
///
/// The executor decides what runs where (through the scheduler); a backend
/// only carries jobs out. The default, [`TokioBackend`], runs them as tasks
/// in this process.
///
/// # Contract for custom backends
///
/// - [`capacity`](ExecutionBackend::capacity) is how many jobs may run at
///   once; the executor never starts more.
/// - [`execute`](ExecutionBackend::execute) runs the job on the given worker
///   and returns its output, or `None` if the worker was lost (preempted, its
///   machine died): the executor then runs the iteration again elsewhere,
///   within the preemption budget, without counting it as a failure. A job
///   that was lost must not have effects the executor can see: its output is
///   dropped.
/// - Dropping the future returned by `execute` (the operation was cancelled)
///   must stop the job promptly.
#[async_trait]
pub trait ExecutionBackend: Send + Sync + 'static {
    /// How many jobs may run at once.
    fn capacity(&self) -> u64;

    /// Runs `job` on `worker`; `None` if the worker was lost.
    async fn execute(&self, worker: WorkerId, job: Job) -> Option<JobOutput>;

    /// Whether this backend wants [`JobSpec`]s: if so, the executor calls
    /// [`execute_spec`](ExecutionBackend::execute_spec) instead of
    /// [`execute`](ExecutionBackend::execute). No by default: a backend
    /// that runs jobs in this process needs no spec, and building one costs
    /// time per iteration.
    fn runs_specs(&self) -> bool {
        false
    }

    /// Runs the job that `spec` describes on `worker` (called instead of
    /// [`execute`] when [`runs_specs`](ExecutionBackend::runs_specs) says
    /// so); by default it runs `job` here, with [`execute`].
    ///
    /// A backend that runs iterations in other processes or on other
    /// machines (a cluster engine) overrides it: it hands `spec` to a
    /// worker there, which restores the input state from the checkpoint
    /// store, runs the body with the host, scores it, and writes the
    /// resulting state (with [`Host::snapshot`](crate::Host::snapshot)) to
    /// the store; the backend then returns a [`RemoteOutput`] naming it,
    /// and drops `job` unrun. A spec without an input
    /// ([`JobSpec::input`] is `None`) has its input only in this process's
    /// memory: such a backend must run `job` here, or not take the job.
    ///
    /// [`execute`]: ExecutionBackend::execute
    async fn execute_spec(&self, worker: WorkerId, spec: JobSpec, job: Job) -> Option<JobOutput> {
        let _ = spec;
        self.execute(worker, job).await
    }
}

/// What a job does, in a form that can travel to another process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The operation.
    pub op: Arc<str>,
    /// The iteration to run.
    pub iteration: u64,
    /// How many iterations the operation has.
    pub iterations: u64,
    /// Which start of it this is, from 1.
    pub attempt: u32,
    /// The name of the iteration variable to set.
    pub iteration_var: Arc<str>,
    /// The seed for this iteration ([`derive_seed`](crate::derive_seed)).
    pub seed: u64,
    /// The cell's body.
    pub body: Arc<str>,
    /// The selection expression to score the result with, if the
    /// iteration is a candidate (parallel, async with a rule).
    pub expr: Option<Arc<str>>,
    /// Where the input state is in the checkpoint store; `None` if it is
    /// only in this process's memory.
    pub input: Option<StateRef>,
}

/// A state in the checkpoint store: a part of a committed generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    /// The generation (see [`CheckpointLog::load`](pragma_checkpoint::CheckpointLog::load)).
    pub generation: u64,
    /// The part that holds the state.
    pub part: Cow<'static, str>,
}

/// The output of a job that ran elsewhere (see
/// [`ExecutionBackend::execute_spec`]).
#[derive(Debug)]
pub struct RemoteOutput {
    /// The key in the checkpoint store of the resulting state (written
    /// with [`Host::snapshot`](crate::Host::snapshot)), or why the run
    /// failed. The executor restores the state, then deletes the key.
    pub result: Result<Key, RunError>,
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
    /// The output to return from [`ExecutionBackend::execute_spec`].
    pub fn into_output(self) -> JobOutput {
        Box::new(self)
    }
}

/// Runs every job as a task on the current tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct TokioBackend {
    workers: u64,
}

impl TokioBackend {
    /// A backend with `workers` slots.
    pub fn new(workers: u64) -> Self {
        TokioBackend { workers }
    }
}

#[async_trait]
impl ExecutionBackend for TokioBackend {
    fn capacity(&self) -> u64 {
        self.workers
    }

    async fn execute(&self, _worker: WorkerId, job: Job) -> Option<JobOutput> {
        Some(job.await)
    }
}

/// A [`RemoteOutput`] as it travels between processes (a file in a shared
/// store, say): plain JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteReport {
    /// The key of the resulting state, if the run succeeded.
    pub state: Option<String>,
    /// Why the run failed, if it did.
    pub error: Option<RemoteError>,
    /// The score as text (`"0.93"`, `"NaN"`), if it was scored.
    pub score: Option<String>,
    /// Why it could not be scored, if it could not.
    pub invalid: Option<pragma_selector::InvalidReason>,
    /// Seconds the worker spent on it.
    pub seconds: f64,
    /// Earlier runs cut short (see [`RemoteOutput::lost_runs`]).
    #[serde(default)]
    pub lost_runs: u64,
}

/// How a remote run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "message")]
pub enum RemoteError {
    /// The body failed; it may be retried.
    Failed(String),
    /// The body asked for interactive input.
    InteractiveInput(String),
    /// The run was cancelled.
    Cancelled,
}

impl From<&RemoteOutput> for RemoteReport {
    fn from(output: &RemoteOutput) -> RemoteReport {
        let (state, error) = match &output.result {
            Ok(key) => (Some(key.to_string()), None),
            Err(RunError::Failed(m)) => (None, Some(RemoteError::Failed(m.clone()))),
            Err(RunError::InteractiveInput(m)) => {
                (None, Some(RemoteError::InteractiveInput(m.clone())))
            }
            Err(RunError::Cancelled) => (None, Some(RemoteError::Cancelled)),
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
        }
    }
}

impl TryFrom<RemoteReport> for RemoteOutput {
    type Error = String;

    /// Fails if the report names a bad key, has an unreadable score, or
    /// says neither what it produced nor how it failed.
    fn try_from(report: RemoteReport) -> Result<RemoteOutput, String> {
        let result = match (report.state, report.error) {
            (_, Some(RemoteError::Failed(m))) => Err(RunError::Failed(m)),
            (_, Some(RemoteError::InteractiveInput(m))) => Err(RunError::InteractiveInput(m)),
            (_, Some(RemoteError::Cancelled)) => Err(RunError::Cancelled),
            (Some(key), None) => Ok(Key::parse(&key).map_err(|e| e.to_string())?),
            (None, None) => return Err("the report names neither a state nor an error".into()),
        };
        let evaluation = match (report.score, report.invalid) {
            (_, Some(reason)) => Some(Evaluation::Invalid(reason)),
            (Some(text), None) => Some(Evaluation::Score(
                text.parse::<f64>()
                    .map_err(|e| format!("the report's score `{text}`: {e}"))?,
            )),
            (None, None) => None,
        };
        Ok(RemoteOutput {
            result,
            evaluation,
            seconds: report.seconds,
            lost_runs: report.lost_runs,
        })
    }
}

impl JobSpec {
    /// The context to run the body in, with a fresh cancellation token.
    pub fn context(&self) -> IterationContext {
        IterationContext {
            op: Arc::clone(&self.op),
            iteration: self.iteration,
            attempt: self.attempt,
            iteration_var: Arc::clone(&self.iteration_var),
            seed: self.seed,
            cancel: tokio_util::sync::CancellationToken::new(),
        }
    }
}

/// Runs `spec` here, as a remote backend's worker does: restores the input
/// state from `log`, sets the iteration variable, runs the body with
/// `host`, scores the result if the spec has an expression, and writes the
/// resulting state to `result` in the log's store. The returned output is
/// what the backend hands to the executor (carried over as a
/// [`RemoteReport`] if it crosses processes).
///
/// A spec without an input cannot run elsewhere: the output says so as a
/// failure.
pub async fn run_spec<H: Host, S: Store>(
    host: &H,
    log: &CheckpointLog<S>,
    spec: &JobSpec,
    result: &Key,
) -> RemoteOutput {
    let begin = std::time::Instant::now();
    let failed = |message: String| RemoteOutput {
        result: Err(RunError::Failed(message)),
        evaluation: None,
        seconds: begin.elapsed().as_secs_f64(),
        lost_runs: 0,
    };
    let Some(input) = &spec.input else {
        return failed("the job's input state is not in the store".into());
    };
    let mut state = match log.load(&spec.op, input.generation).await {
        Ok(manifest) => match log.open_part(&manifest, &input.part).await {
            Ok(mut reader) => match host.restore(&mut reader).await {
                Ok(state) => state,
                Err(e) => return failed(format!("restoring the input state: {e}")),
            },
            Err(e) => return failed(format!("reading the input state: {e}")),
        },
        Err(e) => return failed(format!("reading the input state: {e}")),
    };
    host.set_iteration_var(&mut state, &spec.iteration_var, spec.iteration);
    if let Err(e) = host.run(&spec.body, &mut state, &spec.context()).await {
        return RemoteOutput {
            result: Err(e),
            evaluation: None,
            seconds: begin.elapsed().as_secs_f64(),
            lost_runs: 0,
        };
    }
    let evaluation = match &spec.expr {
        Some(expr) => Some(host.evaluate(expr, &state).await),
        None => None,
    };
    // Stream the snapshot into the store through a pipe.
    let (mut writer, mut reader) = tokio::io::duplex(1 << 16);
    let snapshot = async {
        let snapped = host.snapshot(&state, &mut writer).await;
        drop(writer);
        snapped
    };
    let (snapped, stored) = tokio::join!(snapshot, log.store().put(result, &mut reader));
    match (snapped, stored) {
        (Ok(()), Ok(_)) => RemoteOutput {
            result: Ok(result.clone()),
            evaluation,
            seconds: begin.elapsed().as_secs_f64(),
            lost_runs: 0,
        },
        (Err(e), _) => failed(format!("saving the resulting state: {e}")),
        (_, Err(e)) => failed(format!("saving the resulting state: {e}")),
    }
}
