//! Where iterations run: the backend's side of the contract.

use std::any::Any;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use pragma_checkpoint::Key;
use pragma_scheduler::WorkerId;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::host::IterationContext;
use crate::wire::RemoteOutput;

/// The output of a job run in this process: opaque to the backend, which
/// only hands it back ([`JobOutcome::Ran`]); only the executor, which made
/// the job, reads it.
pub struct LocalOutput(Box<dyn Any + Send>);

impl LocalOutput {
    /// Wraps `value`, what the job's run here gives its maker.
    pub fn new<T: Any + Send>(value: T) -> LocalOutput {
        LocalOutput(Box::new(value))
    }

    /// The value, if it is a `T`.
    pub fn take<T: Any>(self) -> Option<T> {
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
    /// A job doing `spec`, whose run here is `local`: the executor makes
    /// them; a backend's own tests may too (see the executor's
    /// `conformance` suite).
    pub fn new(spec: JobSpec, local: impl Future<Output = LocalOutput> + Send + 'static) -> Job {
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
/// only carries jobs out. The executor's default, `TokioBackend`, runs them as tasks
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
///   ([`run_spec`](crate::run_spec) does all of it), or hands its bytes back
///   ([`run_spec_returning`](crate::run_spec_returning)); the backend then returns
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
/// The executor's `conformance::backend` (its `conformance` feature)
/// checks an implementation against this contract.
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

impl JobSpec {
    /// The first attempt at `iteration` of the `iterations` of operation
    /// `op`, running `body`: iteration variable `iteration`, the derived
    /// seed, no expression, its input only in memory, its result saved.
    /// The executor makes the specs a backend runs; this is for a backend's
    /// or a worker's own tests: set the other fields with the `with_`
    /// methods.
    pub fn new(
        op: impl Into<Arc<str>>,
        iteration: u64,
        iterations: u64,
        body: impl Into<Arc<str>>,
    ) -> JobSpec {
        let op = op.into();
        JobSpec {
            seed: crate::derive_seed(&op, iteration),
            op,
            iteration,
            iterations,
            attempt: 1,
            iteration_var: Arc::from("iteration"),
            body: body.into(),
            expr: None,
            input: None,
            result_saved: true,
            runs_at_once: None,
        }
    }

    /// The same spec, scoring its result with `expr`.
    pub fn with_expr(self, expr: &str) -> JobSpec {
        JobSpec {
            expr: Some(Arc::from(expr)),
            ..self
        }
    }

    /// The same spec, reading its input from `input` in the store.
    pub fn with_input(self, input: StateRef) -> JobSpec {
        JobSpec {
            input: Some(input),
            ..self
        }
    }

    /// Where the resulting state of a run of this job elsewhere goes in
    /// the checkpoint store: `remote/OP/ITERATION-ATTEMPT` (what every
    /// remote backend's worker passes to [`run_spec`](crate::run_spec)).
    ///
    /// Fails if the operation's id cannot be part of a key (the executor's
    /// ids always can).
    pub fn result_key(&self) -> Result<Key, pragma_checkpoint::Error> {
        Key::parse(&format!(
            "remote/{}/{}-{}",
            self.op, self.iteration, self.attempt
        ))
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
        self.context_with(CancellationToken::new())
    }

    /// The context to run the body in, stopped by `cancel` (the executor
    /// keeps a token per running job).
    pub fn context_with(&self, cancel: CancellationToken) -> IterationContext {
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
