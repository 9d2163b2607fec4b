//! Conformance suites for the two traits other people implement: a
//! [`Host`] ([`host`]) and an [`ExecutionBackend`] ([`backend`]). Every
//! in-tree implementation runs them in its tests; run them in yours.
//!
//! Each suite is one async function that returns what it found wrong
//! (a [`Nonconformance`]) instead of panicking, so that a test can also show
//! that a broken implementation fails it.
//!
//! A backend runs one call; a host gives a sample of its own language: a
//! state, a body that runs on it, an expression that scores it, and how an
//! expression reads the iteration variable (here the scripted host of the
//! `test-util` feature, whose expressions are variable names):
//!
//! ```
//! use pragma_executor_local::conformance::{self, HostSample};
//! use pragma_executor_local::testkit::{MapState, ScriptedHost};
//! use pragma_executor_local::TokioBackend;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! conformance::backend(&TokioBackend::new(4)).await.expect("TokioBackend conforms");
//!
//! let state = MapState::from([("value".to_owned(), 1.0)]);
//! let sample = HostSample::new(state, "any body", "value", |name| name.to_owned());
//! conformance::host(&ScriptedHost::new(), sample).await.expect("the scripted host conforms");
//! # }
//! ```
//!
//! A shell host's sample would be a state directory, a body such as
//! `echo 5 > score`, the expression `cat score`, and
//! `|name| format!("echo \"${name}\"")`.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;

use pragma_scheduler::WorkerId;
use pragma_selector::Evaluation;

use pragma_contract::{ExecutionBackend, Job, JobOutcome, JobSpec, LocalOutput};
use pragma_contract::{Host, IterationContext, RunError};

/// What an implementation does that its trait's contract forbids: the
/// checkpoint crate's type, so that every suite (stores, hosts, backends)
/// answers alike.
pub use pragma_checkpoint::conformance::Nonconformance;

fn fail<T>(message: impl Into<String>) -> Result<T, Nonconformance> {
    Err(Nonconformance(message.into()))
}

/// What the [`host`] suite needs to know about a host: a state to work on,
/// and expressions and a body in the host's language.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HostSample<State> {
    /// A state that can be saved.
    pub state: State,
    /// A body that runs on it and succeeds.
    pub body: String,
    /// A selection expression that scores `state` (and the state the body
    /// leaves) as a number.
    pub expr: String,
    /// An expression that reads the iteration variable `name` as a number.
    pub reads_var: fn(&str) -> String,
    /// A state with variables that cannot be saved, and their names.
    pub unsaveable: Option<(State, Vec<String>)>,
}

impl<State> HostSample<State> {
    /// A sample: `state`, a `body` that runs on it, an `expr` that scores
    /// it, and how to read an iteration variable.
    pub fn new(
        state: State,
        body: impl Into<String>,
        expr: impl Into<String>,
        reads_var: fn(&str) -> String,
    ) -> Self {
        HostSample {
            state,
            body: body.into(),
            expr: expr.into(),
            reads_var,
            unsaveable: None,
        }
    }

    /// Also checks that `state` reports exactly `names` as unsaveable.
    pub fn with_unsaveable(mut self, state: State, names: Vec<String>) -> Self {
        self.unsaveable = Some((state, names));
        self
    }
}

fn context(iteration: u64) -> IterationContext {
    let mut context = IterationContext::new("op-conformance", iteration);
    context.iteration_var = Arc::from("conformance_iteration");
    context
}

/// Expressions no host can make sense of: they must give an invalid
/// evaluation or a score, never a panic.
const GARBAGE: &[&str] = &[
    "",
    "   ",
    "(((",
    ")",
    "\"",
    "'",
    "\\",
    "\u{0}",
    "+-*/",
    "\u{fffd}\n\t",
];

/// Checks `host` against the [`Host`] contract with `sample`:
///
/// - a snapshot restored behaves like the original: it scores the same,
///   and the body run on both leaves states that score the same;
/// - [`Host::evaluate`] of malformed expressions gives an evaluation (a
///   panic fails the suite), and an expression naming nothing is invalid;
/// - the iteration variable is set by [`Host::set_iteration_var`] and gone
///   after [`Host::remove_iteration_var`];
/// - [`Host::unsaveable`] names nothing in a saveable state, and exactly
///   the sample's names in its unsaveable one.
///
/// A panic in the host is a nonconformance naming the check it broke, not
/// a panic of the suite.
///
/// Generic where the backend and store suites take `&dyn`: the sample is of
/// the host's own state type, which a trait object cannot name.
pub async fn host<H: Host>(host: &H, sample: HostSample<H::State>) -> Result<(), Nonconformance> {
    unpanicked("a snapshot's round trip", round_trip(host, &sample)).await?;
    unpanicked("states as values", states_are_values(host, &sample)).await?;
    unpanicked(
        "scoring in the same go",
        scored_in_the_same_go(host, &sample),
    )
    .await?;
    unpanicked(
        "malformed expressions",
        malformed_expressions(host, &sample),
    )
    .await?;
    unpanicked("the iteration variable", iteration_variable(host, &sample)).await?;
    unpanicked("unsaveable variables", async { unsaveable(host, sample) }).await
}

/// The check `check`, named `name`, with a panic in it as a
/// nonconformance (`it panicked checking NAME: MESSAGE`).
async fn unpanicked(
    name: &str,
    check: impl Future<Output = Result<(), Nonconformance>>,
) -> Result<(), Nonconformance> {
    pragma_checkpoint::conformance::unpanicked(&format!("it panicked checking {name}"), check).await
}

/// The score of an evaluation, if it is one.
fn score(evaluation: Evaluation) -> Option<f64> {
    match evaluation {
        Evaluation::Score(score) => Some(score),
        Evaluation::Invalid(_) => None,
    }
}

/// A snapshot restored scores as the original, and so do the states the
/// body leaves on both.
async fn round_trip<H: Host>(
    host: &H,
    sample: &HostSample<H::State>,
) -> Result<(), Nonconformance> {
    let original = score(host.evaluate(&sample.expr, &sample.state).await);
    if original.is_none() {
        return fail(format!(
            "the sample's expression `{}` does not score its state",
            sample.expr
        ));
    }
    let mut bytes = Vec::new();
    host.snapshot(&sample.state, &mut bytes)
        .await
        .map_err(|e| Nonconformance(format!("snapshot of the sample state: {e}")))?;
    let mut restored = host
        .restore(&mut bytes.as_slice())
        .await
        .map_err(|e| Nonconformance(format!("restoring a snapshot: {e}")))?;
    let again = score(host.evaluate(&sample.expr, &restored).await);
    if again != original {
        return fail(format!(
            "a restored snapshot scores {again:?} where the original scores {original:?}"
        ));
    }
    let mut ran = sample.state.clone();
    let run = host.run(&sample.body, &mut ran, &context(0)).await;
    let run_restored = host.run(&sample.body, &mut restored, &context(0)).await;
    if let Err(e) = run.and(run_restored) {
        return fail(format!("the sample's body failed: {e}"));
    }
    let (after, after_restored) = (
        score(host.evaluate(&sample.expr, &ran).await),
        score(host.evaluate(&sample.expr, &restored).await),
    );
    if after != after_restored {
        return fail(format!(
            "the body run on a restored snapshot leaves a state scoring {after_restored:?}, \
             on the original {after:?}"
        ));
    }
    Ok(())
}

/// A state left by a run whose result is not saved (a repeat between its
/// checkpoints) is still a value: a clone of it scores and snapshots as it
/// did after the original runs on, and the chain gives what a chain of
/// saved runs gives.
async fn states_are_values<H: Host>(
    host: &H,
    sample: &HostSample<H::State>,
) -> Result<(), Nonconformance> {
    let mut unsaved = context(0);
    unsaved.result_saved = false;
    let body_failed = |e: RunError| Nonconformance(format!("the sample's body failed: {e}"));
    let mut chained = sample.state.clone();
    host.run(&sample.body, &mut chained, &unsaved)
        .await
        .map_err(body_failed)?;
    let kept = chained.clone();
    let kept_score = score(host.evaluate(&sample.expr, &kept).await);
    host.run(&sample.body, &mut chained, &unsaved)
        .await
        .map_err(body_failed)?;
    let mut bytes = Vec::new();
    host.snapshot(&kept, &mut bytes)
        .await
        .map_err(|e| Nonconformance(format!("snapshot of a state left by an unsaved run: {e}")))?;
    let restored = host
        .restore(&mut bytes.as_slice())
        .await
        .map_err(|e| Nonconformance(format!("restoring a snapshot: {e}")))?;
    let (later, restored_score) = (
        score(host.evaluate(&sample.expr, &kept).await),
        score(host.evaluate(&sample.expr, &restored).await),
    );
    if later != kept_score || restored_score != kept_score {
        return fail(format!(
            "a clone of a state scored {kept_score:?}, then {later:?} (its snapshot              {restored_score:?}) once the original ran on: states must not share"
        ));
    }
    let mut saved = sample.state.clone();
    for _ in 0..2 {
        host.run(&sample.body, &mut saved, &context(0))
            .await
            .map_err(body_failed)?;
    }
    let (chain_score, saved_score) = (
        score(host.evaluate(&sample.expr, &chained).await),
        score(host.evaluate(&sample.expr, &saved).await),
    );
    if chain_score != saved_score {
        return fail(format!(
            "two unsaved runs leave a state scoring {chain_score:?}, two saved ones              {saved_score:?}"
        ));
    }
    Ok(())
}

/// A run told the expression its result is scored with scores as a
/// separate evaluation does, and another expression is not answered from
/// that score.
async fn scored_in_the_same_go<H: Host>(
    host: &H,
    sample: &HostSample<H::State>,
) -> Result<(), Nonconformance> {
    let mut told = context(0);
    told.expr = Some(Arc::from(sample.expr.as_str()));
    let mut scored = sample.state.clone();
    host.run(&sample.body, &mut scored, &told)
        .await
        .map_err(|e| Nonconformance(format!("the sample's body failed: {e}")))?;
    let mut plain = sample.state.clone();
    host.run(&sample.body, &mut plain, &context(0))
        .await
        .map_err(|e| Nonconformance(format!("the sample's body failed: {e}")))?;
    let (told_score, plain_score) = (
        score(host.evaluate(&sample.expr, &scored).await),
        score(host.evaluate(&sample.expr, &plain).await),
    );
    if told_score != plain_score {
        return fail(format!(
            "a run told its expression scores {told_score:?}, one not told {plain_score:?}"
        ));
    }
    let nothing = (sample.reads_var)("pragma_conformance_no_such_name_7f3a");
    if let Evaluation::Score(score) = host.evaluate(&nothing, &scored).await {
        return fail(format!(
            "another expression, reading a variable that does not exist, scored {score} \
             on a state scored in the same go"
        ));
    }
    Ok(())
}

/// Malformed expressions give an evaluation (a panic fails the suite), and
/// one naming nothing is invalid.
async fn malformed_expressions<H: Host>(
    host: &H,
    sample: &HostSample<H::State>,
) -> Result<(), Nonconformance> {
    let long = "x".repeat(100_000);
    for expr in GARBAGE.iter().copied().chain([long.as_str()]) {
        let _ = host.evaluate(expr, &sample.state).await;
    }
    let nothing = "pragma_conformance_no_such_name_7f3a";
    if let Evaluation::Score(score) = host
        .evaluate(&(sample.reads_var)(nothing), &sample.state)
        .await
    {
        return fail(format!(
            "reading a variable that does not exist scored {score}"
        ));
    }
    Ok(())
}

/// The iteration variable reads as set, and is gone once removed.
async fn iteration_variable<H: Host>(
    host: &H,
    sample: &HostSample<H::State>,
) -> Result<(), Nonconformance> {
    let var = "pragma_conformance_iteration";
    let mut with_var = sample.state.clone();
    host.set_iteration_var(&mut with_var, var, 7);
    match host.evaluate(&(sample.reads_var)(var), &with_var).await {
        Evaluation::Score(7.0) => {}
        other => {
            return fail(format!(
                "the iteration variable set to 7 reads as {other:?}"
            ));
        }
    }
    host.remove_iteration_var(&mut with_var, var);
    if let Evaluation::Score(score) = host.evaluate(&(sample.reads_var)(var), &with_var).await {
        return fail(format!(
            "the iteration variable is still there after its removal ({score})"
        ));
    }
    Ok(())
}

/// Nothing in the saveable state is unsaveable, and exactly the sample's
/// names are in its unsaveable one.
fn unsaveable<H: Host>(host: &H, sample: HostSample<H::State>) -> Result<(), Nonconformance> {
    let named = host.unsaveable(&sample.state);
    if !named.is_empty() {
        return fail(format!(
            "the saveable sample state reports {named:?} as unsaveable"
        ));
    }
    if let Some((state, mut expected)) = sample.unsaveable {
        let mut named = host.unsaveable(&state);
        named.sort();
        expected.sort();
        if named != expected {
            return fail(format!(
                "unsaveable variables reported as {named:?}, not {expected:?}"
            ));
        }
    }
    Ok(())
}

/// A job that runs here and outputs `id`, after `work`.
fn job(id: u64, work: impl std::future::Future<Output = ()> + Send + 'static) -> Job {
    // Its input is only here (none in the store): it must run here.
    let spec = JobSpec::new("op-conformance", id, u64::MAX, "");
    Job::new(spec, async move {
        work.await;
        LocalOutput::new(id)
    })
}

/// How long a backend may take to start the jobs it is given, or to stop
/// one that is dropped.
const PATIENCE: Duration = Duration::from_secs(10);

/// Checks `backend` against the [`ExecutionBackend`] contract, with jobs
/// whose input is only in this process (which it must run here):
///
/// - it runs [`capacity`](ExecutionBackend::capacity) jobs at once: as
///   many jobs, each waiting for all the others to start, all finish;
/// - each job's outcome is its own ([`JobOutcome::Ran`] with what that job
///   produced) or [`JobOutcome::Lost`], never another job's output nor a
///   remote result for a job that must run here;
/// - a job that panics ends its `execute` (by the panic, or an outcome)
///   and leaves the backend whole: it runs `capacity` jobs at once again;
/// - dropping the future of [`execute`](ExecutionBackend::execute) stops
///   its job promptly.
pub async fn backend(backend: &dyn ExecutionBackend) -> Result<(), Nonconformance> {
    let capacity = backend.capacity();
    if capacity == 0 {
        return fail("capacity is 0: no job could ever run");
    }
    runs_capacity_at_once(backend, capacity).await?;
    survives_a_panic(backend).await?;
    unpanicked("jobs at once", runs_capacity_at_once(backend, capacity))
        .await
        .map_err(|Nonconformance(problem)| {
            Nonconformance(format!("after a job that panicked, {problem}"))
        })?;
    stops_a_dropped_job(backend).await
}

/// All `capacity` jobs given at once run at once: each waits for all the
/// others to start before it ends.
async fn runs_capacity_at_once(
    backend: &dyn ExecutionBackend,
    capacity: u64,
) -> Result<(), Nonconformance> {
    // All `capacity` jobs must be in flight at once for any to finish (a
    // job lost before it started counts as arrived: it never will).
    let width = capacity.min(64);
    let arrived = Arc::new(AtomicU64::new(0));
    let started: Arc<Vec<AtomicBool>> =
        Arc::new((0..width).map(|_| AtomicBool::new(false)).collect());
    let runs = (0..width).map(|id| {
        let (arrived, started) = (Arc::clone(&arrived), Arc::clone(&started));
        let job = job(id, {
            let (arrived, started) = (Arc::clone(&arrived), Arc::clone(&started));
            async move {
                started[id as usize].store(true, Ordering::SeqCst);
                arrived.fetch_add(1, Ordering::SeqCst);
                while arrived.load(Ordering::SeqCst) < width {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        async move {
            let outcome = backend.execute(WorkerId(id), job).await;
            if matches!(outcome, JobOutcome::Lost) && !started[id as usize].load(Ordering::SeqCst) {
                arrived.fetch_add(1, Ordering::SeqCst);
            }
            (id, outcome)
        }
    });
    let outcomes = tokio::time::timeout(PATIENCE, futures::future::join_all(runs))
        .await
        .map_err(|_| {
            Nonconformance(format!(
                "{width} jobs given at once (its capacity is {capacity}) did not all run at once"
            ))
        })?;
    for (id, outcome) in outcomes {
        match outcome {
            JobOutcome::Ran(output) => match output.take::<u64>() {
                Some(got) if got == id => {}
                other => {
                    return fail(format!(
                        "job {id}'s outcome holds another output ({other:?})"
                    ));
                }
            },
            JobOutcome::Lost => {}
            JobOutcome::Remote(_) => {
                return fail(format!(
                    "job {id}, whose input is only in this process, was run elsewhere"
                ));
            }
        }
    }
    Ok(())
}

/// A job that panics (user code in a host may) ends its `execute` promptly,
/// by the panic or by an outcome: it never hangs.
async fn survives_a_panic(backend: &dyn ExecutionBackend) -> Result<(), Nonconformance> {
    let panicking = job(u64::MAX - 1, async {
        panic!("a job that panics, on purpose, in the conformance suite");
    });
    let run = AssertUnwindSafe(backend.execute(WorkerId(0), panicking)).catch_unwind();
    match tokio::time::timeout(PATIENCE, run).await {
        Err(_) => fail("a job that panicked never ended"),
        Ok(Ok(JobOutcome::Remote(_))) => {
            fail("a job that panicked, whose input is only here, was run elsewhere")
        }
        Ok(_) => Ok(()),
    }
}

/// Dropping the future of `execute` stops its job.
async fn stops_a_dropped_job(backend: &dyn ExecutionBackend) -> Result<(), Nonconformance> {
    let dropped = Arc::new(AtomicBool::new(false));
    let guard = DropFlag(Arc::clone(&dropped));
    let long = job(u64::MAX, async move {
        let _guard = guard;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let _ = tokio::time::timeout(
        Duration::from_millis(100),
        backend.execute(WorkerId(0), long),
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !dropped.load(Ordering::SeqCst) {
        if tokio::time::Instant::now() > deadline {
            return fail("a job whose future was dropped still runs");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
