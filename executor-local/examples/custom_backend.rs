//! A custom execution backend: each job travels as JSON to a worker that
//! has its own host and reads the input state from the shared checkpoint
//! store, runs it with `run_spec`, and answers with a JSON report, as a
//! worker on another machine would. The conformance suite checks it
//! first.
//!
//! Run it with `cargo run -p pragma-executor-local --example custom_backend`.

use std::sync::Arc;

use pragma_executor_local::prelude::*;
use pragma_executor_local::{
    CheckpointLog, ExecutionBackend, Job, JobOutcome, JobSpec, JsonHost, RemoteReport, SerdeHost,
    WorkerId, run_spec,
};
use tokio::sync::{mpsc, oneshot};

/// The state is a number; a body `add N` adds N times the iteration.
struct Adder;

#[async_trait]
impl SerdeHost for Adder {
    type State = i64;

    async fn run(&self, body: &str, n: &mut i64, ctx: &IterationContext) -> Result<(), RunError> {
        let step: i64 = body
            .trim()
            .strip_prefix("add ")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| RunError::Failed(format!("expected `add N`, got `{body}`")))?;
        *n += step * ctx.iteration as i64;
        Ok(())
    }

    async fn evaluate(&self, _expr: &str, n: &i64) -> Evaluation {
        Evaluation::Score(*n as f64)
    }
}

/// A job sent to a worker: the spec as JSON, and where to answer.
type Request = (String, oneshot::Sender<String>);

/// Sends every job that can travel (its input is in the store) to a pool
/// of workers, as JSON; runs the others here.
struct PoolBackend {
    workers: u64,
    requests: mpsc::Sender<Request>,
}

#[async_trait]
impl ExecutionBackend for PoolBackend {
    fn capacity(&self) -> u64 {
        self.workers
    }

    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        if job.spec().input.is_none() {
            // Its input is only in this process's memory.
            return job.run_here().await;
        }
        let spec = serde_json::to_string(job.spec()).expect("a spec is JSON");
        let (answer, answered) = oneshot::channel();
        if self.requests.send((spec, answer)).await.is_err() {
            return JobOutcome::Lost;
        }
        // A worker that goes away without answering lost the job: the
        // executor runs it again.
        let Ok(report) = answered.await else {
            return JobOutcome::Lost;
        };
        let report: RemoteReport = serde_json::from_str(&report).expect("a report is JSON");
        match report.try_into() {
            Ok(output) => JobOutcome::Remote(output),
            Err(_) => JobOutcome::Lost,
        }
    }
}

/// A worker "elsewhere": its own host, the shared store, JSON in and out.
async fn worker(store: MemoryStore, requests: Arc<tokio::sync::Mutex<mpsc::Receiver<Request>>>) {
    let host = JsonHost(Adder);
    let log = CheckpointLog::new(store);
    loop {
        let Some((spec, answer)) = requests.lock().await.recv().await else {
            return;
        };
        let spec: JobSpec = serde_json::from_str(&spec).expect("a spec is JSON");
        let key = spec.result_key().expect("the executor's ids make keys");
        let output = run_spec(&host, &log, &spec, &key).await;
        let report = serde_json::to_string(&RemoteReport::from(&output)).expect("JSON");
        let _ = answer.send(report);
    }
}

fn pool(store: &MemoryStore, workers: u64) -> PoolBackend {
    let (requests, received) = mpsc::channel(16);
    let received = Arc::new(tokio::sync::Mutex::new(received));
    for _ in 0..workers {
        tokio::spawn(worker(store.clone(), Arc::clone(&received)));
    }
    PoolBackend { workers, requests }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();

    pragma_executor_local::conformance::backend(&pool(&store, 3)).await?;
    println!("the pool backend passes the backend conformance suite");

    let backend = Arc::new(pool(&store, 3));
    let executor = Executor::with_backend(JsonHost(Adder), store, backend, Config::default());
    // Each iteration starts from the submitted 100 (read from the store by
    // a worker) and adds 7 × its number: iteration 9 wins with 163.
    let cell = "#pragma parallel --iterations 10 --parallel-runs 3 --max-by n\nadd 7";
    let outcome = executor.submit(cell, 100).await?.wait().await?;
    let best = outcome.best.expect("a best state");
    println!(
        "parallel on the pool: {}, best iteration {} with {}",
        outcome.status.name(),
        best.iteration,
        best.state
    );
    assert_eq!((best.iteration, best.state), (9, 163));
    Ok(())
}
