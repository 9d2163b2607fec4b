//! [`SlurmBackend`]: the executor's iterations as SLURM jobs.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pragma_contract::WorkerId;
use pragma_contract::{ExecutionBackend, Job, JobOutcome, JobSpec, RemoteOutput, RemoteReport};
use serde::{Deserialize, Serialize};

use crate::error::SlurmError;
use crate::queue::{in_queue, job_name, run};

/// How the backend uses the cluster.
#[derive(Debug, Clone)]
pub struct SlurmConfig {
    /// Iterations that run at once (the array's `%P` throttle).
    pub workers: u64,
    /// A directory every node can reach, for specs, reports and logs.
    pub shared_dir: PathBuf,
    /// The worker command and its first arguments; the task directory is
    /// passed in the environment variable `PRAGMA_TASK_DIR`.
    pub worker_command: Vec<OsString>,
    /// `--partition`, if any.
    pub partition: Option<String>,
    /// More arguments for `sbatch`, each passed as one argument.
    pub sbatch_args: Vec<String>,
    /// How often to look for reports and at the queue.
    pub poll: Duration,
}

/// What a task directory holds besides the specs: how to run them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskSetup {
    /// Opaque to the backend: what the worker command needs to open the
    /// store and the host (written by whoever builds the backend).
    pub worker: serde_json::Value,
}

/// One operation's job array.
#[derive(Debug)]
struct ArrayJob {
    job_id: String,
}

/// Runs jobs on SLURM. See the crate docs.
#[derive(Debug)]
pub struct SlurmBackend {
    config: SlurmConfig,
    /// Job arrays by operation.
    arrays: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<ArrayJob>>>>,
    /// What task directories tell workers (see [`TaskSetup`]).
    setup: serde_json::Value,
}

/// Seconds before its time limit that a whole job's worker is told to
/// wind down (SIGTERM): `pragma run`'s grace (20 s) and a checkpoint, and
/// SLURM sends it up to 60 s early.
pub const WHOLE_JOB_NOTICE: u64 = 60;

/// The fixed job script: no value from a cell is ever part of it.
pub(crate) const SCRIPT: &str = "#!/bin/sh\n\
# pragma: runs one iteration; everything it needs is in $PRAGMA_TASK_DIR.\n\
exec \"$PRAGMA_WORKER\" \"$PRAGMA_WORKER_ARG\" \"$PRAGMA_TASK_DIR\"\n";

impl SlurmBackend {
    /// A backend; checks that `sbatch` answers and that the shared
    /// directory can be written.
    pub fn new(config: SlurmConfig) -> Result<SlurmBackend, SlurmError> {
        std::fs::create_dir_all(&config.shared_dir).map_err(|source| SlurmError::SharedDir {
            dir: config.shared_dir.clone(),
            source,
        })?;
        let script = config.shared_dir.join("task.sh");
        std::fs::write(&script, SCRIPT).map_err(|source| SlurmError::SharedDir {
            dir: config.shared_dir.clone(),
            source,
        })?;
        let version = std::process::Command::new("sbatch")
            .arg("--version")
            .output();
        match version {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                return Err(SlurmError::Command {
                    command: "sbatch --version".into(),
                    message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
                });
            }
            Err(source) => {
                return Err(SlurmError::Spawn {
                    program: "sbatch".into(),
                    source,
                });
            }
        }
        Ok(SlurmBackend {
            config,
            arrays: Mutex::new(HashMap::new()),
            setup: serde_json::Value::Null,
        })
    }

    /// Sets what task directories tell the worker command (see
    /// [`TaskSetup`]): how to open the store and build the host there.
    pub fn with_setup(mut self, setup: serde_json::Value) -> Self {
        self.setup = setup;
        self
    }

    /// What task directories tell the worker command.
    pub fn setup(&self) -> &serde_json::Value {
        &self.setup
    }

    /// The directory of an operation's tasks.
    pub fn op_dir(&self, op: &str) -> PathBuf {
        self.config.shared_dir.join(op)
    }

    /// Cancels every job of `op` (`scancel`); its checkpoints stay.
    pub async fn cancel(&self, op: &str) -> Result<(), SlurmError> {
        let name = job_name(op);
        run("scancel", &[OsString::from("--name"), OsString::from(name)]).await?;
        Ok(())
    }

    /// Submits one requeueable job that runs the worker command with
    /// `worker_arg` (instead of the configured one) on `dir`, its output
    /// appended to `dir/run.out`: for work that is one job as a whole (a
    /// repeat operation that resumes from its last checkpoint whenever it
    /// starts). Its worker alone (not the bodies it runs) gets SIGTERM
    /// [`WHOLE_JOB_NOTICE`] seconds before the job's time limit: a
    /// preemption notice, on which `pragma run` lets the running iteration
    /// finish and checkpoints. Returns the job id.
    pub async fn submit_whole(
        &self,
        name: &str,
        dir: &Path,
        worker_arg: &str,
    ) -> Result<String, SlurmError> {
        let worker = self
            .config
            .worker_command
            .first()
            .cloned()
            .unwrap_or_default();
        let mut output = OsString::from("--output=");
        output.push(dir.join("run.out"));
        let args = vec![
            output,
            "--open-mode=append".into(),
            // `B:`: the batch step's shell, which execs the worker.
            format!("--signal=B:TERM@{WHOLE_JOB_NOTICE}").into(),
        ];
        self.sbatch(name, args, dir, (worker, worker_arg.into()))
            .await
    }

    async fn submit(
        &self,
        op: &str,
        dir: &Path,
        array: Option<(u64, u64)>,
    ) -> Result<String, SlurmError> {
        let mut args = Vec::new();
        let mut output = OsString::from("--output=");
        output.push(dir.join(if array.is_some() {
            "slurm-%A_%a.out"
        } else {
            "slurm-%j.out"
        }));
        args.push(output);
        if let Some((count, throttle)) = array {
            args.push(format!("--array=0-{}%{}", count.saturating_sub(1), throttle.max(1)).into());
        }
        let worker = match self.config.worker_command.as_slice() {
            [worker, arg, ..] => (worker.clone(), arg.clone()),
            [worker] => (worker.clone(), OsString::new()),
            [] => {
                return Err(SlurmError::Command {
                    command: "sbatch".into(),
                    message: "no worker command is configured".into(),
                });
            }
        };
        self.sbatch(&job_name(op), args, dir, worker).await
    }

    /// `sbatch` with the common arguments, the fixed script, and the
    /// values in the job's environment.
    async fn sbatch(
        &self,
        name: &str,
        specific: Vec<OsString>,
        dir: &Path,
        (worker, worker_arg): (OsString, OsString),
    ) -> Result<String, SlurmError> {
        let mut args: Vec<OsString> = vec![
            "--parsable".into(),
            "--requeue".into(),
            format!("--job-name={name}").into(),
        ];
        args.extend(specific);
        if let Some(partition) = &self.config.partition {
            args.push(format!("--partition={partition}").into());
        }
        args.extend(self.config.sbatch_args.iter().map(OsString::from));
        args.push(self.config.shared_dir.join("task.sh").into());
        // Values reach the script through its environment, never its text.
        let mut command = tokio::process::Command::new("sbatch");
        command
            .args(&args)
            .arg("--export=ALL")
            .env("PRAGMA_WORKER", worker)
            .env("PRAGMA_WORKER_ARG", worker_arg)
            .env("PRAGMA_TASK_DIR", dir);
        let output = command.output().await.map_err(|source| SlurmError::Spawn {
            program: "sbatch".into(),
            source,
        })?;
        if !output.status.success() {
            return Err(SlurmError::Command {
                command: "sbatch".into(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let text = String::from_utf8_lossy(&output.stdout);
        Ok(text.trim().split(';').next().unwrap_or_default().to_owned())
    }

    /// Writes the specs of every iteration of the operation (`spec` is the
    /// first one asked for) and submits its array, once.
    async fn array_for(&self, spec: &JobSpec, total: u64) -> Result<String, SlurmError> {
        let cell = {
            let mut arrays = self.arrays.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(arrays.entry(spec.op.to_string()).or_default())
        };
        let array = cell
            .get_or_try_init(|| async {
                let dir = self.op_dir(&spec.op).join("array");
                // An array submitted by an earlier coordinator of this
                // operation (killed, restarted) goes on serving it: its
                // finished tasks left reports, the rest still run.
                if let Ok(bytes) = tokio::fs::read(dir.join("job.id")).await
                    && let Ok(job_id) = serde_json::from_slice::<String>(&bytes)
                    && in_queue(&job_id).await
                {
                    return Ok(ArrayJob { job_id });
                }
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|source| SlurmError::SharedDir {
                        dir: dir.clone(),
                        source,
                    })?;
                write_setup(&dir, &self.setup).await?;
                for iteration in 0..total {
                    let task_spec = spec.for_iteration(iteration);
                    write_json(&dir.join(format!("{iteration}.spec.json")), &task_spec).await?;
                }
                let job_id = self
                    .submit(&spec.op, &dir, Some((total, self.config.workers)))
                    .await?;
                write_json(&dir.join("job.id"), &job_id).await?;
                Ok::<_, SlurmError>(ArrayJob { job_id })
            })
            .await?;
        Ok(array.job_id.clone())
    }

    /// Why job `job` of the task directory `dir` may have ended without
    /// running its worker, and where to look.
    fn never_started(&self, job: &str, dir: &Path) -> String {
        let output = match job.split_once('_') {
            Some((array, task)) => format!("slurm-{array}_{task}.out"),
            None => format!("slurm-{job}.out"),
        };
        format!(
            "SLURM job {job} ended without starting its iteration: its node could not \
             reach `{}` or could not run `{}`. The store and its `slurm` directory must be \
             on a file system that every node mounts at the same path (or the store an \
             s3:// URL), and the pragma binary must be there too; the job's own output, \
             if SLURM could write it, is `{}`",
            dir.display(),
            self.config
                .worker_command
                .first()
                .map(|w| w.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir.join(output).display()
        )
    }

    /// Waits for the report at `report`; `None` if the job `job` left the
    /// queue without writing it (lost: killed, its node failed).
    async fn wait_for(&self, report: &Path, job: &str) -> Option<RemoteReport> {
        let mut absent = 0;
        loop {
            if let Ok(bytes) = tokio::fs::read(report).await
                && let Ok(report) = serde_json::from_slice::<RemoteReport>(&bytes)
            {
                return Some(report);
            }
            if in_queue(job).await {
                absent = 0;
            } else {
                // The report is written before the task ends: two looks
                // without either mean the task is gone.
                absent += 1;
                if absent > 2 {
                    return None;
                }
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }
}

/// Cancels a job when the wait for it is dropped (the executor stopped
/// the iteration).
struct CancelOnDrop {
    job: Option<String>,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            // tokio reaps the child in the background: no zombie is left,
            // and the drop does not wait for scancel.
            let _ = tokio::process::Command::new("scancel")
                .arg(job)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
    }
}

#[async_trait]
impl ExecutionBackend for SlurmBackend {
    fn capacity(&self) -> u64 {
        self.config.workers
    }

    async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
        if job.spec().input.is_none() {
            // Its input is only in this process: it runs here.
            return job.run_here().await;
        }
        let spec = job.into_spec();
        let failed = |message: String| {
            JobOutcome::Remote(RemoteOutput {
                result: Err(pragma_contract::RunError::Failed(message)),
                evaluation: None,
                seconds: 0.0,
                lost_runs: 0,
            })
        };
        let (dir, stem, job_id) = if spec.attempt == 1 {
            let job = match self.array_for(&spec, spec.iterations).await {
                Ok(job) => job,
                Err(e) => return failed(e.to_string()),
            };
            let dir = self.op_dir(&spec.op).join("array");
            let task = format!("{job}_{}", spec.iteration);
            (dir, spec.iteration.to_string(), task)
        } else {
            let dir = self
                .op_dir(&spec.op)
                .join(format!("{}-{}", spec.iteration, spec.attempt));
            if let Err(source) = tokio::fs::create_dir_all(&dir).await {
                return failed(SlurmError::SharedDir { dir, source }.to_string());
            }
            if let Err(e) = write_setup(&dir, &self.setup).await {
                return failed(e.to_string());
            }
            if let Err(e) = write_json(&dir.join("single.spec.json"), &spec).await {
                return failed(e.to_string());
            }
            match self.submit(&spec.op, &dir, None).await {
                Ok(job) => (dir, "single".to_owned(), job),
                Err(e) => return failed(e.to_string()),
            }
        };
        let mut guard = CancelOnDrop {
            job: Some(job_id.clone()),
        };
        let report = self
            .wait_for(&dir.join(format!("{stem}.report.json")), &job_id)
            .await;
        guard.job = None;
        let Some(report) = report else {
            // A task that started counts its starts before anything else:
            // one that left none never ran the worker on its node.
            if tokio::fs::try_exists(dir.join(format!("{stem}.starts")))
                .await
                .unwrap_or(true)
            {
                return JobOutcome::Lost; // killed, or its node failed
            }
            return failed(self.never_started(&job_id, &dir));
        };
        match RemoteOutput::try_from(report) {
            Ok(output) => JobOutcome::Remote(output),
            Err(e) => failed(format!("the worker's report: {e}")),
        }
    }
}

pub(crate) async fn write_setup(dir: &Path, setup: &serde_json::Value) -> Result<(), SlurmError> {
    write_json(
        &dir.join("setup.json"),
        &TaskSetup {
            worker: setup.clone(),
        },
    )
    .await
}

/// Writes JSON beside, then renames: a reader never sees half a file.
pub(crate) async fn write_json(path: &Path, value: &impl Serialize) -> Result<(), SlurmError> {
    let shared = |source| SlurmError::SharedDir {
        dir: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(value).map_err(|e| shared(std::io::Error::other(e)))?;
    let temporary = path.with_extension("tmp");
    tokio::fs::write(&temporary, bytes).await.map_err(shared)?;
    tokio::fs::rename(&temporary, path).await.map_err(shared)
}
