//! What the executor's benchmarks share: a host whose body does nothing.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pragma_checkpoint::Store;
use pragma_executor_local::{Executor, FinalStatus, Host, IterationContext, RunError};
use pragma_selector::Evaluation;
use tokio::io::{AsyncRead, AsyncWrite};

/// A host whose body does nothing, or sleeps; it may note which operation
/// each run is of, in the order the runs start (the order of admission).
#[derive(Default)]
pub(crate) struct Noop {
    sleep: Duration,
    runs: Option<Mutex<Vec<Arc<str>>>>,
}

impl Noop {
    /// Bodies that sleep `sleep` (nothing if zero).
    #[allow(dead_code)] // each bench uses its own constructors
    pub(crate) fn sleeping(sleep: Duration) -> Noop {
        Noop { sleep, runs: None }
    }

    /// Bodies that do nothing, with their operations noted if `note_runs`.
    #[allow(dead_code)]
    pub(crate) fn noting_runs(note_runs: bool) -> Noop {
        Noop {
            sleep: Duration::ZERO,
            runs: note_runs.then(Mutex::default),
        }
    }

    /// The operation of each run, in the order they started.
    #[allow(dead_code)]
    pub(crate) fn runs(&self) -> Vec<Arc<str>> {
        self.runs
            .as_ref()
            .and_then(|runs| runs.lock().ok().map(|runs| runs.clone()))
            .unwrap_or_default()
    }
}

/// Runs one parallel operation of `iterations` no-op iterations, 8 at a
/// time, on `executor` to its success; how long it took.
pub(crate) async fn run_parallel<S: Store + 'static>(
    executor: &Executor<Noop, S>,
    iterations: u64,
) -> Duration {
    let cell = format!(
        "#pragma parallel --iterations {iterations} --parallel-runs 8 --max-by score\nnoop"
    );
    let begin = std::time::Instant::now();
    let outcome = executor
        .submit(&cell, ())
        .await
        .expect("submit")
        .wait()
        .await
        .expect("outcome");
    let elapsed = begin.elapsed();
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    elapsed
}

/// The body: nothing, or a sleep of `sleep`. The sleep is a thread's
/// (precise to tens of microseconds), not tokio's timer, which rounds every
/// sleep up to the next millisecond: 5% of 20 ms that no executor could
/// win back.
pub(crate) async fn body(sleep: Duration) {
    if sleep.is_zero() {
        std::hint::black_box(());
    } else {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(sleep)).await;
    }
}

#[async_trait]
impl Host for Noop {
    type State = ();

    async fn run(
        &self,
        _body: &str,
        _state: &mut (),
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        if let Some(runs) = &self.runs
            && let Ok(mut runs) = runs.lock()
        {
            runs.push(Arc::clone(&ctx.op));
        }
        body(self.sleep).await;
        Ok(())
    }

    async fn evaluate(&self, _expr: &str, _state: &()) -> Evaluation {
        Evaluation::Score(1.0)
    }

    async fn snapshot(
        &self,
        _state: &(),
        _out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        Ok(())
    }

    async fn restore(&self, _input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<()> {
        Ok(())
    }

    fn set_iteration_var(&self, _state: &mut (), _name: &str, _iteration: u64) {}

    fn remove_iteration_var(&self, _state: &mut (), _name: &str) {}
}
