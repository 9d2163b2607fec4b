//! An embedding of the executor, from one dependency: a host whose state
//! is a tiny model in memory, trained by a `repeat` cell that checkpoints
//! every 5 iterations, then a `parallel` search for a learning rate.
//!
//! Run it with `cargo run -p pragma-executor-local --example in_memory_host`.

use pragma_executor_local::prelude::*;
use pragma_executor_local::{JsonHost, SerdeHost};

/// The state: one weight fitted to the target 3.0, and its loss.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Model {
    weight: f64,
    loss: f64,
}

/// Runs bodies of the form `step LEARNING_RATE`: one step of gradient
/// descent on `(weight - 3)²`. In a parallel search each iteration tries
/// its own rate: `step 0.1*iteration` multiplies by the iteration number.
struct Trainer;

#[async_trait]
impl SerdeHost for Trainer {
    type State = Model;

    async fn run(
        &self,
        body: &str,
        model: &mut Model,
        ctx: &IterationContext,
    ) -> Result<(), RunError> {
        let rate = learning_rate(body.trim(), ctx.iteration)?;
        let gradient = 2.0 * (model.weight - 3.0);
        model.weight -= rate * gradient;
        model.loss = (model.weight - 3.0).powi(2);
        Ok(())
    }

    async fn evaluate(&self, expr: &str, model: &Model) -> Evaluation {
        match expr {
            "loss" => Evaluation::Score(model.loss),
            other => Evaluation::failed(format!("unknown expression `{other}`")),
        }
    }
}

/// `step 0.1` or `step 0.1*iteration`.
fn learning_rate(body: &str, iteration: u64) -> Result<f64, RunError> {
    let bad = || RunError::Failed(format!("expected `step RATE[*iteration]`, got `{body}`"));
    let rate = body.strip_prefix("step ").ok_or_else(bad)?;
    match rate.strip_suffix("*iteration") {
        Some(rate) => Ok(rate.parse::<f64>().map_err(|_| bad())? * iteration as f64),
        None => rate.parse().map_err(|_| bad()),
    }
}

#[tokio::main]
async fn main() -> Result<(), ExecError> {
    let executor = Executor::new(
        JsonHost(Trainer),
        MemoryStore::new(),
        Config::default().workers(4),
    );
    let start = Model {
        weight: 0.0,
        loss: 9.0,
    };

    // Train: 20 steps, a checkpoint every 5; the best checkpoint wins.
    let cell = "#pragma repeat --iterations 20 --checkpoint-period 5 --min-by loss\nstep 0.2";
    let mut handle = executor.submit(cell, start.clone()).await?;
    while let Some(event) = handle.next_event().await {
        if let Event::CheckpointCommitted {
            iterations_done,
            score,
            ..
        } = event
        {
            println!("checkpoint after {iterations_done} iterations: loss {score:?}");
        }
    }
    let trained = handle.wait().await?;
    let best = trained
        .best
        .expect("a repeat that succeeded has a best state");
    println!(
        "repeat: {}, best checkpoint at iteration {}, weight {:.4}",
        trained.status.name(),
        best.iteration,
        best.state.weight
    );
    assert_eq!(trained.status, FinalStatus::Succeeded);
    assert!(best.state.loss < 1e-3);

    // Search: 8 learning rates at once, each from the same start.
    let cell =
        "#pragma parallel --iterations 8 --parallel-runs 4 --min-by loss\nstep 0.1*iteration";
    let searched = executor.submit(cell, start).await?.wait().await?;
    let best = searched
        .best
        .expect("a search that succeeded has a best state");
    println!(
        "parallel: {}, best rate {:.1} (iteration {}), loss {:.4}, {} runs",
        searched.status.name(),
        0.1 * best.iteration as f64,
        best.iteration,
        best.state.loss,
        searched.usage.iterations_run
    );
    // One step at rate 0.5 lands on the target.
    assert_eq!(best.iteration, 5);
    Ok(())
}
