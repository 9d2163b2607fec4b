//! The default execution backend: tasks in this process.

use async_trait::async_trait;
use pragma_contract::{ExecutionBackend, Job, JobOutcome, WorkerId};

/// Runs every job as a task on the current tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct TokioBackend {
    workers: u64,
}

impl TokioBackend {
    /// A backend with `workers` slots.
    pub fn new(workers: u64) -> Self {
        TokioBackend { workers }
    }
}

#[async_trait]
impl ExecutionBackend for TokioBackend {
    fn capacity(&self) -> u64 {
        self.workers
    }

    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        job.run_here().await
    }
}
