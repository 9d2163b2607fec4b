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
use crate::iteration::run_iteration;

/// The output of a job run in this process: opaque to the backend, which
/// only hands it back ([`JobOutcome::Ran`]); only the executor reads it.
pub struct LocalOutput(Box<dyn Any + Send>);

impl LocalOutput {
    pub(crate) fn new<T: Any + Send>(value: T) -> LocalOutput {
        LocalOutput(Box::new(value))
    }

    pub(crate) fn take<T: Any>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|value| *value)
    }
}

impl std::fmt::Debug for LocalOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalOutput(..)")
    }
}

/// What became of a job.
#[derive(Debug)]
#[non_exhaustive]
pub enum JobOutcome {
    /// It ran in this process ([`Job::run_here`]).
    Ran(LocalOutput),
    /// It ran elsewhere, from its [`JobSpec`], and left its resulting state
    /// in the checkpoint store.
    Remote(RemoteOutput),
    /// Its worker was lost (preempted, its machine died) before it gave a
    /// result: the executor runs the iteration again elsewhere.
    Lost,
}

/// One iteration's work, packaged by the executor: what it does as a
/// [`JobSpec`] that can travel, and the same work ready to run here.
pub struct Job {
    spec: JobSpec,
    local: Pin<Box<dyn Future<Output = LocalOutput> + Send>>,
}

impl Job {
    /// A job doing `spec`, whose run here is `local`.
    pub(crate) fn new(
        spec: JobSpec,
        local: impl Future<Output = LocalOutput> + Send + 'static,
    ) -> Job {
        Job {
            spec,
            local: Box::pin(local),
        }
    }

    /// What the job does.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Runs the job in this process. Dropping the future stops it.
    pub async fn run_here(self) -> JobOutcome {
        JobOutcome::Ran(self.local.await)
    }

    /// The job's spec, to run elsewhere; its run here is dropped unrun.
    pub fn into_spec(self) -> JobSpec {
        self.spec
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Runs iterations on workers.
///
/// The executor decides what runs where (through the scheduler); a backend
/// only carries jobs out. The default, [`TokioBackend`], runs them as tasks
/// in this process; a backend for a cluster engine hands each job's
/// [`JobSpec`] to a worker there.
///
/// # Contract for custom backends
///
/// - [`capacity`](ExecutionBackend::capacity) is how many jobs may run at
///   once; the executor never starts more. It may change (a cluster that
///   grows or shrinks): the executor reads it again every second, starts
///   more jobs once it grew, and none until below it once it shrank (the
///   running ones go on).
/// - [`execute`](ExecutionBackend::execute) carries the job out on the
///   given worker, either here ([`Job::run_here`], which gives
///   [`JobOutcome::Ran`]) or elsewhere: a worker there restores the input
///   state from the checkpoint store, runs the body with the host, scores
///   it, and writes the resulting state (with
///   [`Host::snapshot`](crate::Host::snapshot)) to the store
///   ([`run_spec`] does all of it), or hands its bytes back
///   ([`run_spec_returning`]); the backend then returns
///   [`JobOutcome::Remote`] naming it, or carrying them. A spec without an input
///   ([`JobSpec::input`] is `None`) has its input only in this process's
///   memory: such a job must run here.
/// - [`JobOutcome::Lost`] says the worker was lost: the executor runs the
///   iteration again elsewhere, within the preemption budget, without
///   counting it as a failure. A lost job must have no effect the executor
///   can see.
/// - Dropping the future returned by `execute` (the operation was
///   cancelled) must stop the job promptly.
/// - A panic in `execute` fails the job's iteration (`the execution
///   backend panicked running the body: MESSAGE`), retried within the
///   budget; the operation goes on.
/// - A backend whose cost per task is large beside a short iteration (a
///   cluster engine's scheduling round trip) may ask for a
///   [`batch`](ExecutionBackend::batch) of jobs per slot of its capacity,
///   to run several of one operation one after another as one task. The
///   executor then has up to `capacity × batch` jobs in the backend's hands
///   at once, and up to `parallel_runs × batch` of one operation; the
///   backend itself keeps to `capacity` running at once in all, and to
///   [`JobSpec::runs_at_once`] of one operation.
///
/// With the `conformance` feature, `conformance::backend` checks an
/// implementation against this contract.
#[async_trait]
pub trait ExecutionBackend: Send + Sync + 'static {
    /// How many jobs may run at once, now (see the contract above).
    fn capacity(&self) -> u64;

    /// How many jobs the backend takes per slot of its capacity, to run
    /// them one after another (see the contract above); 1, the default,
    /// for a backend that runs each job as it comes.
    fn batch(&self) -> u64 {
        1
    }

    /// Carries out `job` on `worker`.
    async fn execute(&self, worker: WorkerId, job: Job) -> JobOutcome;
}

/// What a job does, in a form that can travel to another process (the
/// executor makes them; a backend reads them, or passes them on as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
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
    /// Whether the state this run leaves is saved (see
    /// [`IterationContext::result_saved`]).
    #[serde(default = "saved_by_default")]
    pub result_saved: bool,
    /// How many iterations of the operation may run at once: its
    /// `--parallel-runs`, 1 for a `repeat` or `async`, `None` for as many
    /// as the backend has room for. Only a backend that takes a
    /// [`batch`](ExecutionBackend::batch) of jobs per slot needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs_at_once: Option<u64>,
}

fn saved_by_default() -> bool {
    true
}

/// A state in the checkpoint store: a part of a committed generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRef {
    /// The generation (see [`CheckpointLog::load`](pragma_checkpoint::CheckpointLog::load)).
    pub generation: u64,
    /// The part that holds the state.
    pub part: Cow<'static, str>,
}

/// The output of a job that ran elsewhere (see [`ExecutionBackend`]).
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

/// Where a job that ran elsewhere left its resulting state's snapshot.
///
/// Either way it is not durable until the executor records it: a result
/// lost before that (the coordinator died) only means the iteration runs
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteState {
    /// In the checkpoint store, under this key ([`run_spec`]); the
    /// executor restores it, then deletes the key.
    Stored(Key),
    /// Handed back with the output, as bytes ([`run_spec_returning`]): a
    /// cluster engine that returns values (Ray's object store) spares the
    /// store a write, a read and a delete per iteration.
    Returned(Vec<u8>),
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

    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        job.run_here().await
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
    /// The resulting state travels beside the report, as bytes
    /// ([`RemoteState::Returned`]; see [`RemoteReport::into_output`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub returned: bool,
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
    /// The process running the body died under it.
    Lost(String),
    /// The worker's storage was full.
    StorageFull(String),
}

impl From<&RemoteOutput> for RemoteReport {
    fn from(output: &RemoteOutput) -> RemoteReport {
        let (state, error) = match &output.result {
            Ok(RemoteState::Stored(key)) => (Some(key.to_string()), None),
            Ok(RemoteState::Returned(_)) => (None, None),
            Err(RunError::Failed(m)) => (None, Some(RemoteError::Failed(m.clone()))),
            Err(RunError::InteractiveInput(m)) => {
                (None, Some(RemoteError::InteractiveInput(m.clone())))
            }
            Err(RunError::Cancelled) => (None, Some(RemoteError::Cancelled)),
            Err(RunError::Lost(m)) => (None, Some(RemoteError::Lost(m.clone()))),
            Err(RunError::StorageFull(m)) => (None, Some(RemoteError::StorageFull(m.clone()))),
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
    type Error = String;

    /// Fails if the report names a bad key, has an unreadable score, or
    /// says neither what it produced nor how it failed (a report whose
    /// state travels beside it: see [`RemoteReport::into_output`]).
    fn try_from(report: RemoteReport) -> Result<RemoteOutput, String> {
        report.into_output(None)
    }
}

impl RemoteReport {
    /// The output the report describes, with `returned`, the resulting
    /// state's bytes if they travelled beside it ([`RemoteReport::returned`]).
    /// Fails as [`RemoteOutput::try_from`] does, or if the report and the
    /// bytes do not go together.
    pub fn into_output(self, returned: Option<Vec<u8>>) -> Result<RemoteOutput, String> {
        let report = self;
        let result = match (report.state, report.error) {
            (_, Some(RemoteError::Failed(m))) => Err(RunError::Failed(m)),
            (_, Some(RemoteError::InteractiveInput(m))) => Err(RunError::InteractiveInput(m)),
            (_, Some(RemoteError::Cancelled)) => Err(RunError::Cancelled),
            (_, Some(RemoteError::Lost(m))) => Err(RunError::Lost(m)),
            (_, Some(RemoteError::StorageFull(m))) => Err(RunError::StorageFull(m)),
            (Some(_), None) if returned.is_some() => {
                return Err("the report names a stored state, and bytes came beside it".into());
            }
            (Some(key), None) => Ok(RemoteState::Stored(
                Key::parse(&key).map_err(|e| e.to_string())?,
            )),
            (None, None) => match (report.returned, returned) {
                (true, Some(bytes)) => Ok(RemoteState::Returned(bytes)),
                (true, None) => {
                    return Err("the report's state was to come beside it, and did not".into());
                }
                (false, _) => {
                    return Err("the report names neither a state nor an error".into());
                }
            },
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
    /// Where the resulting state of a run of this job elsewhere goes in
    /// the checkpoint store: `remote/OP/ITERATION-ATTEMPT` (what every
    /// remote backend's worker passes to [`run_spec`]).
    pub fn result_key(&self) -> Result<Key, String> {
        Key::parse(&format!(
            "remote/{}/{}-{}",
            self.op, self.iteration, self.attempt
        ))
        .map_err(|e| e.to_string())
    }

    /// The same job for another iteration of the operation, at its first
    /// attempt, with that iteration's seed: what a backend that submits
    /// all iterations at once (a job array) writes for each.
    pub fn for_iteration(&self, iteration: u64) -> JobSpec {
        JobSpec {
            iteration,
            attempt: 1,
            seed: crate::derive_seed(&self.op, iteration),
            ..self.clone()
        }
    }

    /// The context to run the body in, with a fresh cancellation token.
    pub fn context(&self) -> IterationContext {
        self.context_with(tokio_util::sync::CancellationToken::new())
    }

    /// The context to run the body in, stopped by `cancel` (the executor
    /// keeps a token per running job).
    pub(crate) fn context_with(
        &self,
        cancel: tokio_util::sync::CancellationToken,
    ) -> IterationContext {
        IterationContext {
            op: Arc::clone(&self.op),
            iteration: self.iteration,
            attempt: self.attempt,
            iteration_var: Arc::clone(&self.iteration_var),
            seed: self.seed,
            result_saved: self.result_saved,
            expr: self.expr.clone(),
            cancel,
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
    let input = load_input(host, log, spec).await;
    let (state, evaluation) = run_loaded(host, input, spec).await;
    let result = match state {
        Err(e) => Err(e),
        Ok(state) => {
            // Stream the snapshot into the store through a pipe.
            let (mut writer, mut reader) = tokio::io::duplex(1 << 16);
            let snapshot = async {
                let snapped = host.snapshot(&state, &mut writer).await;
                drop(writer);
                snapped
            };
            match tokio::join!(snapshot, log.store().put(result, &mut reader)) {
                (Ok(()), Ok(_)) => Ok(RemoteState::Stored(result.clone())),
                (Err(e), _) => Err(saving_failed(&e)),
                (_, Err(e)) => Err(saving_failed(&e)),
            }
        }
    };
    remote_output(result, evaluation, begin)
}

/// Runs `spec` here on `input`, its input state (restored with
/// [`load_input`], or kept from an earlier job of the same input), as
/// [`run_spec`] does, but hands the resulting state back as bytes
/// ([`RemoteState::Returned`]) instead of writing it to the store.
pub async fn run_spec_returning<H: Host>(
    host: &H,
    input: Result<H::State, RunError>,
    spec: &JobSpec,
) -> RemoteOutput {
    let begin = std::time::Instant::now();
    let (state, evaluation) = run_loaded(host, input, spec).await;
    let result = match state {
        Err(e) => Err(e),
        Ok(state) => {
            let mut bytes = Vec::new();
            match host.snapshot(&state, &mut bytes).await {
                Ok(()) => Ok(RemoteState::Returned(bytes)),
                Err(e) => Err(saving_failed(&e)),
            }
        }
    };
    remote_output(result, evaluation, begin)
}

/// Restores `spec`'s input state from `log`. An input that is not in the
/// store, or cannot be read, fails as the run would.
pub async fn load_input<H: Host, S: Store>(
    host: &H,
    log: &CheckpointLog<S>,
    spec: &JobSpec,
) -> Result<H::State, RunError> {
    let Some(input) = &spec.input else {
        return Err(RunError::Failed(
            "the job's input state is not in the store".into(),
        ));
    };
    let manifest = log
        .load(&spec.op, input.generation)
        .await
        .map_err(|e| RunError::Failed(format!("reading the input state: {e}")))?;
    let mut reader = log
        .open_part(&manifest, &input.part)
        .await
        .map_err(|e| RunError::Failed(format!("reading the input state: {e}")))?;
    host.restore(&mut reader)
        .await
        .map_err(|e| RunError::Failed(format!("restoring the input state: {e}")))
}

/// Sets the iteration variable, runs the body, scores the result.
async fn run_loaded<H: Host>(
    host: &H,
    input: Result<H::State, RunError>,
    spec: &JobSpec,
) -> (Result<H::State, RunError>, Option<Evaluation>) {
    let ctx = spec.context();
    run_iteration(host, input, &spec.body, &ctx, spec.expr.as_deref()).await
}

fn saving_failed(e: &dyn std::fmt::Display) -> RunError {
    RunError::Failed(format!("saving the resulting state: {e}"))
}

fn remote_output(
    result: Result<RemoteState, RunError>,
    evaluation: Option<Evaluation>,
    begin: std::time::Instant,
) -> RemoteOutput {
    RemoteOutput {
        evaluation: if result.is_ok() { evaluation } else { None },
        result,
        seconds: begin.elapsed().as_secs_f64(),
        lost_runs: 0,
    }
}
