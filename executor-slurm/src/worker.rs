//! The worker side: what a SLURM task runs on its node.
//!
//! A task's directory holds its [`JobSpec`] and [`TaskSetup`];
//! [`task_files`] finds them and counts the start, and [`run_task`] runs
//! the iteration with the host and store the caller opens from the setup
//! (the `pragma` binary's `__slurm-task` is a thin call of it), writes
//! the resulting state under [`JobSpec::result_key`], and the report beside the
//! spec.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pragma_checkpoint::{CheckpointLog, Store};
use pragma_contract::{Host, JobSpec, RemoteOutput, RemoteReport, RunError, run_spec};

use crate::backend::TaskSetup;

/// What a task runs, from [`task_files`].
#[derive(Debug)]
pub struct TaskFiles {
    /// The job.
    pub spec: JobSpec,
    /// How to run it (see [`TaskSetup`]).
    pub setup: TaskSetup,
    /// Where its report goes ([`write_report`]).
    pub report: PathBuf,
    /// Earlier starts of this task that left no report: runs cut short by
    /// a requeue or a failed node (for [`RemoteOutput::lost_runs`]).
    pub earlier_runs: u64,
}

/// The worker's side, for the task command: finds its spec in `dir` (the
/// array task's by `SLURM_ARRAY_TASK_ID`, or the single job's), counts
/// this start, and says where its report goes. `None` if the report
/// exists already: a requeued task that finished does nothing.
pub fn task_files(dir: &Path) -> std::io::Result<Option<TaskFiles>> {
    let stem = match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(task) if !task.is_empty() => task
            .parse::<u64>()
            .map_err(|_| {
                std::io::Error::other(format!("SLURM_ARRAY_TASK_ID `{task}` is not a number"))
            })?
            .to_string(),
        _ => "single".to_owned(),
    };
    let report = dir.join(format!("{stem}.report.json"));
    if report.exists() {
        return Ok(None);
    }
    let spec: JobSpec =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{stem}.spec.json")))?)
            .map_err(std::io::Error::other)?;
    let setup: TaskSetup = serde_json::from_slice(&std::fs::read(dir.join("setup.json"))?)
        .map_err(std::io::Error::other)?;
    // One line per start: the earlier ones were cut short.
    let starts = dir.join(format!("{stem}.starts"));
    let earlier_runs = std::fs::read_to_string(&starts)
        .map(|text| text.lines().count() as u64)
        .unwrap_or(0);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&starts)?;
    std::io::Write::write_all(&mut file, b"started\n")?;
    Ok(Some(TaskFiles {
        spec,
        setup,
        report,
        earlier_runs,
    }))
}

/// Writes the worker's report whole (see [`task_files`]).
pub fn write_report(path: &Path, report: &RemoteReport) -> std::io::Result<()> {
    let temporary = path.with_extension("tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec(report).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(temporary, path)
}

/// How long a task whose body failed waits for a SIGTERM of its own before
/// it reports the failure (see [`run_task`]).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How a task's run ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskEnd {
    /// Its report was written before: a requeued task that had finished,
    /// so nothing ran twice.
    AlreadyDone,
    /// It ran, and its report is written (a failure of the body, or of
    /// this node to run it, is a report too).
    Reported,
    /// SLURM stopped it (a requeue, a preemption, a cancel sends SIGTERM):
    /// no report, so its next start runs it again.
    Stopped,
    /// Its task directory could not be read or its report written.
    Broken(String),
}

/// Runs the task in `dir` on this node. `open` makes the host and the
/// checkpoint log from the setup's worker value (what the backend's
/// builder put there); what keeps this node from running the iteration
/// (the store is not there, say) is its failure, reported with the node's
/// name, so that the retry budget applies and the operation names the
/// cause.
pub async fn run_task<H, S>(
    dir: &Path,
    open: impl AsyncFnOnce(serde_json::Value) -> Result<(H, CheckpointLog<S>), String>,
) -> TaskEnd
where
    H: Host,
    S: Store,
{
    let files = match task_files(dir) {
        Ok(Some(files)) => files,
        Ok(None) => return TaskEnd::AlreadyDone,
        Err(e) => return TaskEnd::Broken(format!("the task in `{}`: {e}", dir.display())),
    };
    let TaskFiles {
        spec,
        setup,
        report,
        earlier_runs,
    } = files;
    // SLURM stops a job it requeues, preempts or cancels with SIGTERM to
    // each of its processes. A run stopped so is not the body's failure.
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(terminate) => terminate,
            Err(e) => return TaskEnd::Broken(format!("cannot watch for SIGTERM: {e}")),
        };
    let run = async {
        let (host, log) = open(setup.worker).await?;
        let key = spec.result_key().map_err(|e| e.to_string())?;
        Ok::<_, String>(run_spec(&host, &log, &spec, &key).await)
    };
    let output = tokio::select! {
        output = run => output,
        _ = terminate.recv() => return TaskEnd::Stopped,
    };
    let mut output = match output {
        Ok(output) => {
            if output.result.is_err() {
                // The body may have died of the signal a moment before this
                // process gets its own.
                if tokio::time::timeout(STOP_GRACE, terminate.recv())
                    .await
                    .is_ok()
                {
                    return TaskEnd::Stopped;
                }
            }
            output
        }
        Err(message) => RemoteOutput {
            result: Err(RunError::Failed(format!("on node {}: {message}", node()))),
            evaluation: None,
            seconds: 0.0,
            lost_runs: 0,
        },
    };
    output.lost_runs = earlier_runs;
    match write_report(&report, &RemoteReport::from(&output)) {
        Ok(()) => TaskEnd::Reported,
        Err(e) => TaskEnd::Broken(format!("cannot write `{}`: {e}", report.display())),
    }
}

/// This node's name.
fn node() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
