//! Crash and resume: a `repeat` on a store in a directory stops with its
//! executor after its second checkpoint (as a process killed there would);
//! a new executor on the same directory lists it as unfinished and resumes
//! it from that checkpoint, so only the iterations after it run again.
//!
//! Run it with `cargo run -p pragma-executor-local --example crash_and_resume`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pragma_executor_local::prelude::*;
use pragma_executor_local::{JsonHost, SerdeHost};

/// Counts each run of the body, across both executors.
struct Counting {
    runs: Arc<AtomicU64>,
}

#[async_trait]
impl SerdeHost for Counting {
    type State = u64;

    async fn run(
        &self,
        _body: &str,
        sum: &mut u64,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        *sum += ctx.iteration;
        Ok(())
    }

    async fn evaluate(&self, _expr: &str, sum: &u64) -> Evaluation {
        Evaluation::Score(*sum as f64)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let runs = Arc::new(AtomicU64::new(0));
    let host = || {
        JsonHost(Counting {
            runs: Arc::clone(&runs),
        })
    };
    let cell = "#pragma repeat --iterations 12 --checkpoint-period 3 --max-by sum\naccumulate()";

    let executor = Executor::new(host(), LocalStore::new(dir.path())?, Config::default());
    let mut handle = executor.submit(cell, 0).await?;
    let op = handle.id().to_owned();
    while let Some(event) = handle.next_event().await {
        if let Event::CheckpointCommitted {
            iterations_done: 6, ..
        } = event
        {
            break;
        }
    }
    // The crash: the executor and everything it was running are gone.
    drop(handle);
    drop(executor);
    println!(
        "stopped after the checkpoint of iteration 5 ({} runs)",
        runs.load(Ordering::SeqCst)
    );

    let executor = Executor::new(host(), LocalStore::new(dir.path())?, Config::default());
    let unfinished = executor.unfinished().await?;
    println!("unfinished in the store: {unfinished:?}");
    assert_eq!(unfinished, std::slice::from_ref(&op));
    let (outcome, events) = executor.resume(&op).await?.wait_with_events().await?;
    for event in events {
        if let Event::Resumed {
            iterations_done, ..
        } = event
        {
            println!("resumed with {iterations_done} iterations done");
        }
    }
    let best = outcome.best.expect("a best state");
    println!(
        "{}: the sum of 0..12 is {} (best checkpoint at iteration {}), {} runs in all",
        outcome.status.name(),
        best.state,
        best.iteration,
        runs.load(Ordering::SeqCst)
    );
    assert_eq!(best.state, 66);
    Ok(())
}
