//! A scripted host and a fault-injecting backend, for embedders' tests
//! (feature `test-util`).
//!
//! [`ScriptedHost`] runs no code: its state is a map of named numbers, and
//! each run of the body sets `value` to the number scripted for that
//! iteration (the iteration number by default) and adds 1 to `runs`. It
//! scores a state by looking the expression up as a variable name. Failures
//! and requests for interactive input happen on the iterations you choose,
//! and every run is logged, so a test can check what ran how often.
//!
//! [`FaultyBackend`] runs jobs on [`TokioBackend`], or on a backend of
//! yours, but loses workers (before or after the job ran) at random from a
//! seed, or every Nth job, or crashes the whole executor after N jobs.
//! [`run_cell`] runs a cell to its end on an in-memory store.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use pragma_checkpoint::MemoryStore;
//! use pragma_executor_local::{Config, Executor, FinalStatus};
//! use pragma_executor_local::testkit::{FaultyBackend, ScriptedHost};
//!
//! // An embedder's test: iteration 3 scores best, iteration 1 fails once,
//! // and workers are lost now and then.
//! let host = ScriptedHost::new().value(3, 100.0).fail(1, 1);
//! let backend = Arc::new(FaultyBackend::new(4, 0.2, 7));
//! let config = Config::default().workers(4).retries(2).preemptions(20);
//! let executor = Executor::with_backend(host.clone(), MemoryStore::new(), backend, config);
//! let cell = "#pragma parallel --iterations 6 --max-by value\nbody";
//! let outcome = executor.submit(cell, Default::default()).await.unwrap().wait().await.unwrap();
//! assert_eq!(outcome.status, FinalStatus::Succeeded);
//! let best = outcome.best.unwrap();
//! assert_eq!((best.iteration, best.state["value"]), (3, 100.0));
//! assert!(!best.state.contains_key("iteration"));
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pragma_scheduler::WorkerId;
use pragma_selector::Evaluation;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::backend::TokioBackend;
use crate::executor::Executor;
use crate::report::Outcome;
use crate::{Config, ExecError};
use pragma_checkpoint::MemoryStore;
use pragma_contract::{ExecutionBackend, Host, IterationContext, Job, JobOutcome, RunError};

/// The scripted host's state: named numbers.
pub type MapState = BTreeMap<String, f64>;

/// One run of a body, as the scripted host logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptedRun {
    /// The operation.
    pub op: String,
    /// The iteration.
    pub iteration: u64,
    /// Which start of it.
    pub attempt: u32,
    /// The seed it got.
    pub seed: u64,
    /// Whether the run succeeded.
    pub succeeded: bool,
}

#[derive(Debug, Default)]
struct Script {
    values: BTreeMap<u64, f64>,
    scores: BTreeMap<u64, Evaluation>,
    failures: BTreeMap<u64, u32>,
    panics: BTreeMap<u64, u32>,
    interactive: BTreeSet<u64>,
    unsaveable: Vec<String>,
    delay: Duration,
    runs: Vec<ScriptedRun>,
}

/// A deterministic host for tests. Clones share the script and the log.
#[derive(Debug, Clone, Default)]
pub struct ScriptedHost {
    script: Arc<Mutex<Script>>,
}

impl ScriptedHost {
    /// A host whose runs set `value` to the iteration number.
    pub fn new() -> Self {
        ScriptedHost::default()
    }

    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Iteration `iteration` sets `value` to `value`.
    pub fn value(self, iteration: u64, value: f64) -> Self {
        self.script().values.insert(iteration, value);
        self
    }

    /// States produced by iteration `iteration` evaluate to `evaluation`,
    /// whatever the expression (a NaN, a failure...).
    pub fn score(self, iteration: u64, evaluation: Evaluation) -> Self {
        self.script().scores.insert(iteration, evaluation);
        self
    }

    /// The first `times` runs of iteration `iteration` fail.
    pub fn fail(self, iteration: u64, times: u32) -> Self {
        self.script().failures.insert(iteration, times);
        self
    }

    /// The first `times` runs of iteration `iteration` panic (as user code
    /// in a host may).
    pub fn panic(self, iteration: u64, times: u32) -> Self {
        self.script().panics.insert(iteration, times);
        self
    }

    /// Iteration `iteration` asks for interactive input.
    pub fn interactive(self, iteration: u64) -> Self {
        self.script().interactive.insert(iteration);
        self
    }

    /// Variables the host claims it cannot save.
    pub fn unsaveable(self, names: &[&str]) -> Self {
        self.script().unsaveable = names.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Each run takes this long (a timer: it does not block a thread).
    pub fn delay(self, delay: Duration) -> Self {
        self.script().delay = delay;
        self
    }

    /// Every run so far, in order.
    pub fn runs(&self) -> Vec<ScriptedRun> {
        self.script().runs.clone()
    }
}

#[async_trait]
impl Host for ScriptedHost {
    type State = MapState;

    async fn run(
        &self,
        _body: &str,
        state: &mut MapState,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let delay = self.script().delay;
        if !delay.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = ctx.cancel.cancelled() => return Err(RunError::Cancelled),
            }
        }
        let mut script = self.script();
        let earlier = script
            .runs
            .iter()
            .filter(|r| *r.op == *ctx.op && r.iteration == ctx.iteration)
            .count() as u32;
        let fails = script
            .failures
            .get(&ctx.iteration)
            .is_some_and(|&n| earlier < n);
        let panics = script
            .panics
            .get(&ctx.iteration)
            .is_some_and(|&n| earlier < n);
        let interactive = script.interactive.contains(&ctx.iteration);
        script.runs.push(ScriptedRun {
            op: ctx.op.to_string(),
            iteration: ctx.iteration,
            attempt: ctx.attempt,
            seed: ctx.seed,
            succeeded: !fails && !panics && !interactive,
        });
        if panics {
            drop(script);
            panic!("iteration {} panicked on purpose", ctx.iteration);
        }
        if interactive {
            return Err(RunError::InteractiveInput("input() was called".into()));
        }
        if fails {
            return Err(RunError::Failed(format!(
                "iteration {} failed on purpose",
                ctx.iteration
            )));
        }
        let value = script
            .values
            .get(&ctx.iteration)
            .copied()
            .unwrap_or(ctx.iteration as f64);
        state.insert("value".into(), value);
        state.insert("scored_as".into(), ctx.iteration as f64);
        *state.entry("runs".into()).or_insert(0.0) += 1.0;
        Ok(())
    }

    async fn evaluate(&self, expr: &str, state: &MapState) -> Evaluation {
        let scripted = state
            .get("scored_as")
            .and_then(|&i| self.script().scores.get(&(i as u64)).cloned());
        if let Some(evaluation) = scripted {
            return evaluation;
        }
        match state.get(expr) {
            Some(&value) => Evaluation::Score(value),
            None => Evaluation::failed(format!("NameError: name '{expr}' is not defined")),
        }
    }

    async fn snapshot(
        &self,
        state: &MapState,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        out.write_all(&bytes).await
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<MapState> {
        let mut bytes = Vec::new();
        input.read_to_end(&mut bytes).await?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    fn set_iteration_var(&self, state: &mut MapState, name: &str, iteration: u64) {
        state.insert(name.to_owned(), iteration as f64);
    }

    fn remove_iteration_var(&self, state: &mut MapState, name: &str) {
        state.remove(name);
    }

    fn unsaveable(&self, _state: &MapState) -> Vec<String> {
        self.script().unsaveable.clone()
    }
}

/// Runs jobs on another backend ([`TokioBackend`] by default, or yours:
/// [`wrapping`](FaultyBackend::wrapping)), losing the worker with
/// probability `loss` per job (half the time before the job ran, half
/// after, dropping its result), deterministically from `seed`; or every
/// Nth job ([`lose_every`](FaultyBackend::lose_every)); or crashing the
/// whole executor after N jobs ([`crash_after`](FaultyBackend::crash_after)).
#[derive(Debug)]
pub struct FaultyBackend<B = TokioBackend> {
    inner: B,
    loss: f64,
    every: Option<u64>,
    rng: Mutex<u64>,
    lost: Mutex<u64>,
    jobs: Mutex<u64>,
    crash_after: Option<u64>,
    crashed: tokio::sync::watch::Sender<bool>,
}

impl FaultyBackend {
    /// A backend of `workers` tokio tasks that loses a worker with
    /// probability `loss` per job.
    pub fn new(workers: u64, loss: f64, seed: u64) -> Self {
        FaultyBackend::wrapping(TokioBackend::new(workers), loss, seed)
    }
}

impl<B: ExecutionBackend> FaultyBackend<B> {
    /// `inner`, your backend, losing a worker with probability `loss` per
    /// job: to check that what runs on it survives lost workers.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use pragma_executor_local::{Config, Executor, FinalStatus, MemoryStore, TokioBackend};
    /// use pragma_executor_local::testkit::{FaultyBackend, ScriptedHost};
    ///
    /// // Every third job's worker is lost; each lost run comes again.
    /// let backend = Arc::new(FaultyBackend::wrapping(TokioBackend::new(2), 0.0, 1).lose_every(3));
    /// let config = Config::default().workers(2).preemptions(10);
    /// let executor = Executor::with_backend(ScriptedHost::new(), MemoryStore::new(), backend.clone(), config);
    /// let cell = "#pragma parallel --iterations 6 --max-by value\nbody";
    /// let outcome = executor.submit(cell, Default::default()).await.unwrap().wait().await.unwrap();
    /// assert_eq!(outcome.status, FinalStatus::Succeeded);
    /// assert_eq!(outcome.best.unwrap().iteration, 5);
    /// assert_eq!(backend.lost(), outcome.usage.work_lost);
    /// # }
    /// ```
    pub fn wrapping(inner: B, loss: f64, seed: u64) -> Self {
        FaultyBackend {
            inner,
            loss,
            every: None,
            rng: Mutex::new(seed.max(1)),
            lost: Mutex::new(0),
            jobs: Mutex::new(0),
            crash_after: None,
            crashed: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Simulates a crash of the whole executor at a chosen step: after
    /// `jobs` jobs, no job finishes any more and [`crashed`](Self::crashed)
    /// resolves. The test then drops the executor and builds a new one on
    /// the same store, which resumes the operation:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use std::sync::Arc;
    /// use pragma_checkpoint::MemoryStore;
    /// use pragma_executor_local::{Config, Executor, FinalStatus};
    /// use pragma_executor_local::testkit::{FaultyBackend, ScriptedHost};
    ///
    /// let (host, store) = (ScriptedHost::new(), MemoryStore::new());
    /// let config = Config::default().workers(2);
    /// let cell = "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by value\nbody";
    /// let backend = Arc::new(FaultyBackend::new(2, 0.0, 1).crash_after(3));
    /// let executor = Executor::with_backend(host.clone(), store.clone(), backend.clone(), config);
    /// let op = executor.submit(cell, Default::default()).await.unwrap().id().to_owned();
    /// backend.crashed().await;
    /// drop(executor); // the crash
    ///
    /// let executor = Executor::new(host.clone(), store, config);
    /// let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
    /// assert_eq!(outcome.status, FinalStatus::Succeeded);
    /// assert_eq!(outcome.best.unwrap().iteration, 5);
    /// # }
    /// ```
    pub fn crash_after(mut self, jobs: u64) -> Self {
        self.crash_after = Some(jobs);
        self
    }

    /// Also loses the worker of every `n`th job (the `n`th, the `2n`th,
    /// ...), before it runs. `n` of 0 loses none.
    pub fn lose_every(mut self, n: u64) -> Self {
        self.every = (n > 0).then_some(n);
        self
    }

    /// Resolves once the crash point of [`crash_after`](Self::crash_after)
    /// is reached (never, without one).
    pub async fn crashed(&self) {
        let mut crashed = self.crashed.subscribe();
        let _ = crashed.wait_for(|c| *c).await;
    }

    /// How many workers it lost so far.
    pub fn lost(&self) -> u64 {
        *self.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn next(&self) -> f64 {
        let mut state = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[async_trait]
impl<B: ExecutionBackend> ExecutionBackend for FaultyBackend<B> {
    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn batch(&self) -> u64 {
        self.inner.batch()
    }

    async fn execute(&self, worker: WorkerId, job: Job) -> JobOutcome {
        let started = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            *jobs += 1;
            *jobs
        };
        if self.crash_after.is_some_and(|after| started > after) {
            self.crashed.send_replace(true);
            // The executor is gone: nothing finishes any more.
            return std::future::pending().await;
        }
        let roll = self.next();
        let nth = self.every.is_some_and(|every| started % every == 0);
        if nth || roll < self.loss / 2.0 {
            *self.lost.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            return JobOutcome::Lost; // lost before it ran
        }
        let outcome = self.inner.execute(worker, job).await;
        if roll < self.loss {
            *self.lost.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            return JobOutcome::Lost; // it ran, but the result was lost with the machine
        }
        outcome
    }
}

/// Runs `cell` on `state` with `host` to its end, on an in-memory store
/// and four workers, and gives the outcome: the shortest way to test a host
/// end to end.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use pragma_executor_local::FinalStatus;
/// use pragma_executor_local::testkit::{ScriptedHost, run_cell};
///
/// let host = ScriptedHost::new().value(2, 50.0);
/// let cell = "#pragma parallel --iterations 4 --max-by value\nbody";
/// let outcome = run_cell(host, cell, Default::default()).await.unwrap();
/// assert_eq!(outcome.status, FinalStatus::Succeeded);
/// assert_eq!(outcome.best.unwrap().iteration, 2);
/// # }
/// ```
pub async fn run_cell<H: Host>(
    host: H,
    cell: &str,
    state: H::State,
) -> Result<Outcome<H::State>, ExecError> {
    let executor = Executor::new(host, MemoryStore::new(), Config::default().workers(4));
    executor.submit(cell, state).await?.wait().await
}
