//! One iteration, from its input state to its scored result: the pipeline
//! that a job run in this process (`crate::coordinator`) and one run from
//! its spec ([`run_spec`](crate::run_spec)) share, so that both run a body
//! the same way.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use pragma_selector::Evaluation;

use crate::host::{Host, IterationContext, RunError};

/// What one job run in this process gives back to the coordinator.
pub(crate) struct JobResult<St> {
    pub(crate) iteration: u64,
    pub(crate) result: Result<St, RunError>,
    pub(crate) evaluation: Option<Evaluation>,
    pub(crate) seconds: f64,
    /// Runs of it cut short elsewhere (a cluster requeued it) before this
    /// one: lost work the scheduler never saw.
    pub(crate) lost_runs: u64,
}

/// Runs iteration `ctx.iteration` on its input `state` (or fails as the
/// restore of it did): sets the iteration variable, runs `body` with
/// `host`, and scores the resulting state with `expr` if there is one. A
/// failed input or body gives no evaluation.
///
/// The callers restore the input (from memory or the store, each saying
/// in its own words what failed) and time the job: what they count as its
/// time differs (a job run from its spec also writes its result to the
/// store). The input is a value, not a future to await here, so that a
/// job's future, which is boxed for every iteration, stays small.
pub(crate) async fn run_iteration<H: Host>(
    host: &H,
    state: Result<H::State, RunError>,
    body: &str,
    ctx: &IterationContext,
    expr: Option<&str>,
) -> (Result<H::State, RunError>, Option<Evaluation>) {
    let mut state = match state {
        Ok(state) => state,
        Err(e) => return (Err(e), None),
    };
    // A panic in the host is the iteration's failure (counted, retried
    // within the budget, its message kept), never a hang.
    let set = std::panic::catch_unwind(AssertUnwindSafe(|| {
        host.set_iteration_var(&mut state, &ctx.iteration_var, ctx.iteration);
    }));
    if let Err(panic) = set {
        return (Err(panicked("the host", panic)), None);
    }
    match AssertUnwindSafe(host.run(body, &mut state, ctx))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return (Err(e), None),
        Err(panic) => return (Err(panicked("the host", panic)), None),
    }
    let evaluation = match expr {
        Some(expr) => Some(evaluate(host, expr, &state).await),
        None => None,
    };
    (Ok(state), evaluation)
}

/// Scores `state` with `expr`; a panic in the host is a failed evaluation.
pub(crate) async fn evaluate<H: Host>(host: &H, expr: &str, state: &H::State) -> Evaluation {
    match AssertUnwindSafe(host.evaluate(expr, state))
        .catch_unwind()
        .await
    {
        Ok(evaluation) => evaluation,
        Err(panic) => Evaluation::failed(panic_message(&*panic, "the host", "scoring the state")),
    }
}

/// A panic of `who` (the host, the execution backend) as a failed run.
pub(crate) fn panicked(who: &str, panic: Box<dyn Any + Send>) -> RunError {
    RunError::Failed(panic_message(&*panic, who, "running the body"))
}

/// What a panic says: `who panicked while doing: MESSAGE`.
fn panic_message(panic: &(dyn Any + Send), who: &str, doing: &str) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    format!("{who} panicked {doing}: {message}")
}
