//! Runs the iterations of pragma operations on a SLURM cluster.
//!
//! [`SlurmBackend`] is an [`ExecutionBackend`](pragma_contract::ExecutionBackend) for
//! `pragma_executor_local::Executor`: the executor still decides what
//! runs (retries, budgets, the best candidate, checkpoints), and SLURM runs
//! it. The first iteration of an operation submits **one job array** for
//! all its iterations, throttled to the backend's capacity
//! (`sbatch --array=0-N%P`); task `i` runs iteration `i`. A retry of an
//! iteration is a single job. Each task runs a worker command (the `pragma`
//! binary's `__slurm-task`) that reads its [`JobSpec`](pragma_contract::JobSpec) from a shared
//! directory, runs it with [`run_spec`](pragma_contract::run_spec)
//! against the shared checkpoint store, and writes a
//! [`RemoteReport`](pragma_contract::RemoteReport) beside it. Tasks are requeueable: a task that finds its
//! report already written does nothing, so no finished iteration runs
//! twice.
//!
//! [`SlurmBackend::submit_whole`] submits one requeueable job for work
//! that is a whole (the `pragma` command runs a repeat operation that way:
//! `pragma run` on the node, which resumes from its last checkpoint
//! whenever the job starts; the command reads and follows the job's
//! output itself).
//!
//! The crate has both sides: the backend ([`SlurmBackend`], in `backend`),
//! the worker a task runs ([`worker::run_task`], which a host's binary
//! calls with its own host and store), and the queue commands
//! (`squeue`, `scancel`: [`in_queue`], [`job_queued`], [`scancel`],
//! [`cancel_job`], [`cancel_jobs_of`]) that every caller goes through.
//!
//! Nothing from a cell or a directive is ever put into a shell script or a
//! command line: the job script is fixed text, and specs travel as JSON
//! files whose paths reach the task through its environment.
//!
//! The shared directory and the checkpoint store must be reachable from
//! every node (a shared file system, or an object store for the
//! checkpoints). A task that leaves the queue without a report was lost
//! (killed, its node failed) and runs again, unless it never started: a
//! worker counts its starts ([`task_files`]) before anything else, so a
//! task with none never ran the worker on its node. That iteration fails
//! instead, with a message that names the directory the node could not
//! reach; a worker that cannot open the store reports a failure the same
//! way.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pragma_executor_slurm::{SlurmBackend, SlurmConfig};
//!
//! let backend = SlurmBackend::new(SlurmConfig {
//!     workers: 4,
//!     shared_dir: "/shared/pragma/slurm".into(),
//!     worker_command: vec!["/shared/bin/pragma".into(), "__slurm-task".into()],
//!     partition: Some("batch".into()),
//!     sbatch_args: vec!["--time=01:00:00".into()],
//!     poll: std::time::Duration::from_millis(500),
//! })?;
//! // Executor::with_backend(host, store, Arc::new(backend), config)
//! # Ok(()) }
//! ```

mod backend;
mod error;
mod queue;
pub mod worker;

pub use backend::{SlurmBackend, SlurmConfig, TaskSetup, WHOLE_JOB_NOTICE};
pub use error::SlurmError;
pub use queue::{
    cancel_job, cancel_job_in_runtime, cancel_jobs_of, in_queue, job_name, job_queued, scancel,
};
pub use worker::{TaskFiles, task_files, write_report};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pragma_contract::{JobSpec, RemoteOutput, RemoteReport};

    use super::backend::{SCRIPT, write_json, write_setup};
    use super::*;

    /// The backend against the executor's conformance suite, on the
    /// cluster `scripts/start-slurm` starts (jobs whose input is only in
    /// this process run here; the remote path is tested through `pragma`).
    #[tokio::test]
    async fn the_backend_conforms() {
        if std::env::var_os("PRAGMA_TEST_SLURM").is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "under CI the SLURM tests must run: .ci/run starts a cluster with scripts/start-slurm"
            );
            eprintln!("\n*** SKIPPED: SLURM conformance: PRAGMA_TEST_SLURM is not set ***\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let backend = SlurmBackend::new(SlurmConfig {
            workers: 3,
            shared_dir: dir.path().to_owned(),
            worker_command: vec!["/bin/false".into()],
            partition: std::env::var("PRAGMA_TEST_SLURM_PARTITION").ok(),
            sbatch_args: Vec::new(),
            poll: Duration::from_millis(100),
        })
        .unwrap();
        pragma_executor_local::conformance::backend(&backend)
            .await
            .unwrap();
    }

    /// A spec as it travels to a task (the executor makes them).
    fn spec() -> JobSpec {
        serde_json::from_value(serde_json::json!({
            "op": "op-1",
            "iteration": 0,
            "iterations": 1,
            "attempt": 2,
            "iteration_var": "i",
            "seed": 7,
            "body": "echo '$(not run)'",
            "expr": null,
            "input": null,
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_task_with_its_report_written_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write_setup(dir.path(), &serde_json::json!({ "store": "/s" }))
            .await
            .unwrap();
        write_json(&dir.path().join("single.spec.json"), &spec())
            .await
            .unwrap();
        let task = task_files(dir.path()).unwrap().expect("a task to run");
        assert_eq!(task.spec, spec());
        assert_eq!(task.setup.worker["store"], "/s");
        assert_eq!(task.earlier_runs, 0);
        // Started again without a report: the first run was cut short.
        let task = task_files(dir.path()).unwrap().expect("a task to run");
        assert_eq!(task.earlier_runs, 1);
        let report = task.report;
        let output = RemoteOutput {
            result: Err(pragma_contract::RunError::Failed("boom".into())),
            evaluation: None,
            seconds: 1.5,
            lost_runs: task.earlier_runs,
        };
        write_report(&report, &RemoteReport::from(&output)).unwrap();
        // Requeued after it finished: nothing runs twice.
        assert!(task_files(dir.path()).unwrap().is_none());
        let read: RemoteReport = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        let back = RemoteOutput::try_from(read).unwrap();
        assert_eq!(back.lost_runs, 1);
        assert_eq!(
            back.result.unwrap_err(),
            pragma_contract::RunError::Failed("boom".into())
        );
    }

    #[test]
    fn the_job_script_is_fixed_text() {
        // Whatever a cell holds reaches the script only as variables.
        assert!(!SCRIPT.contains("{"), "{SCRIPT}");
        assert!(SCRIPT.contains("\"$PRAGMA_TASK_DIR\""));
    }
}
