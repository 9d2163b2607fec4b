//! One iteration, from its input state to its scored result: the pipeline
//! that the executor's jobs run in its process and a worker elsewhere
//! ([`run_spec`]) share, so that both run a body the same way.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use pragma_checkpoint::{CheckpointLog, Key, Store};
use pragma_selector::Evaluation;

use crate::backend::JobSpec;
use crate::host::{Host, IterationContext, RunError};
use crate::wire::{RemoteOutput, RemoteState};

/// Runs iteration `ctx.iteration` on its input `state` (or fails as the
/// restore of it did): sets the iteration variable, runs `body` with
/// `host`, and scores the resulting state with `expr` if there is one. A
/// failed input or body gives no evaluation.
///
/// A panic in the host is the iteration's failure
/// ([`RunError::from_panic`]), never a hang; one in scoring is an invalid
/// score.
///
/// The callers restore the input (from memory or the store, each saying
/// in its own words what failed) and time the job: what they count as its
/// time differs (a job run from its spec also writes its result to the
/// store). The input is a value, not a future to await here, so that a
/// job's future, which is boxed for every iteration, stays small.
pub async fn run_iteration<H: Host>(
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
        return (Err(RunError::from_panic("the host", panic)), None);
    }
    match AssertUnwindSafe(host.run(body, &mut state, ctx))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return (Err(e), None),
        Err(panic) => return (Err(RunError::from_panic("the host", panic)), None),
    }
    let evaluation = match expr {
        Some(expr) => Some(evaluate(host, expr, &state).await),
        None => None,
    };
    (Ok(state), evaluation)
}

/// Scores `state` with `expr`; a panic in the host is an invalid score
/// saying so.
pub async fn evaluate<H: Host>(host: &H, expr: &str, state: &H::State) -> Evaluation {
    match AssertUnwindSafe(host.evaluate(expr, state))
        .catch_unwind()
        .await
    {
        Ok(evaluation) => evaluation,
        Err(panic) => Evaluation::failed(panic_message(&*panic, "the host", "scoring the state")),
    }
}

impl RunError {
    /// A panic of `who` (`the host`, `the execution backend`) as a failed
    /// run: `WHO panicked running the body: MESSAGE`.
    pub fn from_panic(who: &str, panic: Box<dyn Any + Send>) -> RunError {
        RunError::Failed(panic_message(&*panic, who, "running the body"))
    }
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

/// Runs `spec` here, as a remote backend's worker does: restores the input
/// state from `log`, sets the iteration variable, runs the body with
/// `host`, scores the result if the spec has an expression, and writes the
/// resulting state to `result` in the log's store. The returned output is
/// what the backend hands to the executor (carried over as a
/// [`RemoteReport`](crate::RemoteReport) if it crosses processes).
///
/// A spec without an input cannot run elsewhere: the output says so as a
/// failure.
pub async fn run_spec<H: Host, S: Store>(
    host: &H,
    log: &CheckpointLog<S>,
    spec: &JobSpec,
    result: &Key,
) -> RemoteOutput {
    let begin = Instant::now();
    let input = load_input(host, log, spec).await.map_err(RunError::from);
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
    let begin = Instant::now();
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
/// store, or cannot be read or restored, is an [`InputError`]: as a
/// [`RunError`] it fails the run.
pub async fn load_input<H: Host, S: Store>(
    host: &H,
    log: &CheckpointLog<S>,
    spec: &JobSpec,
) -> Result<H::State, InputError> {
    let Some(input) = &spec.input else {
        return Err(InputError::NotInStore);
    };
    let manifest = log
        .load(&spec.op, input.generation)
        .await
        .map_err(InputError::Unreadable)?;
    let mut reader = log
        .open_part(&manifest, &input.part)
        .await
        .map_err(InputError::Unreadable)?;
    host.restore(&mut reader)
        .await
        .map_err(InputError::Unrestorable)
}

/// Why [`load_input`] could not give a job's input state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The spec has no input in the store: it is only in the executor's
    /// memory, so the job must run there.
    #[error("the job's input state is not in the store")]
    NotInStore,
    /// The store could not give it: unreachable from here, damaged, gone.
    #[error("reading the input state: {0}")]
    Unreadable(pragma_checkpoint::Error),
    /// The host could not restore the bytes it read.
    #[error("restoring the input state: {0}")]
    Unrestorable(std::io::Error),
}

impl From<InputError> for RunError {
    fn from(error: InputError) -> RunError {
        RunError::Failed(error.to_string())
    }
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
    begin: Instant,
) -> RemoteOutput {
    RemoteOutput {
        evaluation: if result.is_ok() { evaluation } else { None },
        result,
        seconds: begin.elapsed().as_secs_f64(),
        lost_runs: 0,
    }
}
