//! A progress line: follows a `parallel` operation's status and events
//! while it runs, and rewrites one line of the terminal with iterations
//! done, in flight and failed, and the best score so far.
//!
//! Run it with `cargo run -p pragma-executor-local --example progress_line`.

use std::io::Write;
use std::time::Duration;

use pragma_executor_local::prelude::*;
use pragma_executor_local::{JsonHost, Phase, SerdeHost};

/// Each iteration takes a while and scores `100 - (iteration - 13)²`; iteration 7
/// fails.
struct Slow;

#[async_trait]
impl SerdeHost for Slow {
    type State = f64;

    async fn run(
        &self,
        _body: &str,
        score: &mut f64,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        tokio::time::sleep(Duration::from_millis(60 + 10 * (ctx.iteration % 4))).await;
        if ctx.iteration == 7 {
            return Err(RunError::Failed("iteration 7 always fails".into()));
        }
        *score = 100.0 - (ctx.iteration as f64 - 13.0).powi(2);
        Ok(())
    }

    async fn evaluate(&self, _expr: &str, score: &f64) -> Evaluation {
        Evaluation::Score(*score)
    }
}

fn line(status: &Status) -> String {
    let progress = status.schedule.progress();
    let phase = match status.schedule {
        Phase::Queued { .. } => "queued",
        Phase::Running { .. } => "running",
        Phase::Suspended { .. } => "suspended",
        Phase::Ended { .. } => "ended",
    };
    let best = match status.best {
        Some(best) => match best.score {
            Some(score) => format!("best {score} at iteration {}", best.iteration),
            None => format!("best at iteration {}", best.iteration),
        },
        None => "no score yet".to_owned(),
    };
    format!(
        "{phase}: {}/{} done, {} in flight, {} failed; {best}",
        progress.done, progress.total, progress.in_flight, progress.failed
    )
}

#[tokio::main]
async fn main() -> Result<(), ExecError> {
    let executor = Executor::new(
        JsonHost(Slow),
        MemoryStore::new(),
        Config::default().workers(4).retries(0),
    );
    let cell = "#pragma parallel --iterations 24 --parallel-runs 4 --max-by score\nwork()";
    let mut handle = executor.submit(cell, 0.0).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut terminal = std::io::stderr();
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                Some(Event::IterationFailed { iteration, error, .. }) => {
                    let _ = writeln!(terminal, "\r\x1b[2Kiteration {iteration} failed: {error}");
                }
                Some(_) => {}
                None => break,
            },
            _ = tick.tick() => {
                let _ = write!(terminal, "\r\x1b[2K{}", line(&handle.status()));
            }
        }
    }
    let _ = writeln!(terminal, "\r\x1b[2K{}", line(&handle.status()));
    let outcome = handle.wait().await?;
    println!(
        "{}: best iteration {}, {} failed for good",
        outcome.status.name(),
        outcome.best.as_ref().map_or(0, |best| best.iteration),
        outcome.failed_iterations.len()
    );
    assert_eq!(outcome.best.expect("a best state").iteration, 13);
    Ok(())
}
