//! An embedding as a new user writes one, from `cargo new`: one dependency
//! on pragma-executor-local (and tokio). Runs a repeat on a MemoryStore
//! and reads the status as it goes.

use std::io;

use pragma_executor_local::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Clone, Debug, Default, PartialEq)]
struct Counter {
    total: i64,
}

struct AddHost;

#[async_trait]
impl Host for AddHost {
    type State = Counter;

    async fn run(
        &self,
        body: &str,
        state: &mut Counter,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let step: i64 = body
            .trim()
            .parse()
            .map_err(|_| RunError::Failed(format!("not a number: {body}")))?;
        state.total += step * ctx.iteration as i64;
        Ok(())
    }

    async fn evaluate(&self, _expr: &str, state: &Counter) -> Evaluation {
        Evaluation::Score(state.total as f64)
    }

    async fn snapshot(
        &self,
        state: &Counter,
        out: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> io::Result<()> {
        out.write_all(&state.total.to_le_bytes()).await
    }

    async fn restore(&self, input: &mut (dyn AsyncRead + Send + Unpin)) -> io::Result<Counter> {
        let mut bytes = [0u8; 8];
        input.read_exact(&mut bytes).await?;
        Ok(Counter {
            total: i64::from_le_bytes(bytes),
        })
    }

    fn set_iteration_var(&self, _state: &mut Counter, _name: &str, _iteration: u64) {}

    fn remove_iteration_var(&self, _state: &mut Counter, _name: &str) {}
}

#[tokio::main]
async fn main() -> Result<(), ExecError> {
    let executor = Executor::new(AddHost, MemoryStore::new(), Config::default().workers(2));
    let cell = "#pragma repeat --iterations 4 --checkpoint-period 2 --max-by total\n2";
    let handle = executor.submit(cell, Counter::default()).await?;
    let status = handle.status();
    assert!(matches!(
        status.schedule,
        Phase::Queued { .. } | Phase::Running { .. }
    ));
    assert_eq!(status.schedule.progress().total, 4);
    let outcome = handle.wait().await?;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    let best = outcome.best.expect("a best state");
    assert_eq!((best.iteration, best.state.total), (3, 12));
    println!(
        "embedding: repeat {}, best iteration {} with total {}",
        outcome.status.name(),
        best.iteration,
        best.state.total
    );
    Ok(())
}
