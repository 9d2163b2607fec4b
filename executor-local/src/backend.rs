//! Where iterations run.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use pragma_scheduler::WorkerId;

/// The result of a job, opaque to the backend.
pub type JobOutput = Box<dyn Any + Send>;

/// One iteration's work, packaged by the executor: run it to get its output.
pub type Job = Pin<Box<dyn Future<Output = JobOutput> + Send>>;

/// Runs iterations on workers.
///
/// The executor decides what runs where (through the scheduler); a backend
/// only carries jobs out. The default, [`TokioBackend`], runs them as tasks
/// in this process.
///
/// # Contract for custom backends
///
/// - [`capacity`](ExecutionBackend::capacity) is how many jobs may run at
///   once; the executor never starts more.
/// - [`execute`](ExecutionBackend::execute) runs the job on the given worker
///   and returns its output, or `None` if the worker was lost (preempted, its
///   machine died): the executor then runs the iteration again elsewhere,
///   within the preemption budget, without counting it as a failure. A job
///   that was lost must not have effects the executor can see: its output is
///   dropped.
/// - Dropping the future returned by `execute` (the operation was cancelled)
///   must stop the job promptly.
#[async_trait]
pub trait ExecutionBackend: Send + Sync + 'static {
    /// How many jobs may run at once.
    fn capacity(&self) -> u64;

    /// Runs `job` on `worker`; `None` if the worker was lost.
    async fn execute(&self, worker: WorkerId, job: Job) -> Option<JobOutput>;
}

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

    async fn execute(&self, _worker: WorkerId, job: Job) -> Option<JobOutput> {
        Some(job.await)
    }
}
