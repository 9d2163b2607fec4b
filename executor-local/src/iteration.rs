//! One iteration, from its input state to its scored result: the pipeline
//! that a job run in this process (`crate::coordinator`) and one run from
//! its spec ([`run_spec`](crate::run_spec)) share, so that both run a body
//! the same way.

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
    host.set_iteration_var(&mut state, &ctx.iteration_var, ctx.iteration);
    if let Err(e) = host.run(body, &mut state, ctx).await {
        return (Err(e), None);
    }
    let evaluation = match expr {
        Some(expr) => Some(host.evaluate(expr, &state).await),
        None => None,
    };
    (Ok(state), evaluation)
}
