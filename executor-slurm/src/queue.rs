//! The SLURM commands everything here goes through: `squeue` to tell
//! whether a job still runs, `scancel` to stop one.

use std::ffi::OsString;

use crate::error::SlurmError;

/// Whether `job` (`123` or `123_4`) is still queued or running.
pub async fn in_queue(job: &str) -> bool {
    let output = tokio::process::Command::new("squeue")
        .args(squeue_job(job))
        .output()
        .await;
    match output {
        Ok(output) => listed(&output),
        // Cannot tell: assume it runs, rather than run it twice.
        Err(_) => true,
    }
}

/// [`in_queue`] for callers outside a runtime; `None` if `squeue` cannot
/// be run here (not a submit host).
pub fn job_queued(job: &str) -> Option<bool> {
    let output = std::process::Command::new("squeue")
        .args(squeue_job(job))
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(listed(&output))
}

/// `squeue` arguments that list `job` (one line per task, no header).
fn squeue_job(job: &str) -> [&str; 5] {
    ["-h", "-o", "%T", "-j", job]
}

/// Whether `squeue` listed the job: it fails for a job it no longer knows.
fn listed(output: &std::process::Output) -> bool {
    output.status.success() && !output.stdout.trim_ascii().is_empty()
}

/// `scancel ARGS` (a job id, or `--name NAME`).
pub async fn scancel(args: &[OsString]) -> Result<(), SlurmError> {
    run("scancel", args).await.map(|_| ())
}

pub(crate) async fn run(program: &str, args: &[OsString]) -> Result<String, SlurmError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|source| SlurmError::Spawn {
            program: program.into(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(SlurmError::Command {
            command: program.into(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Cancels job `job` as Ctrl-C cancels a run (see `cancel_args`),
/// outside a runtime.
pub fn cancel_job(job: &str) -> Result<(), SlurmError> {
    let mut first_error = None;
    for args in cancel_args(job) {
        if let Err(e) = run_now("scancel", &args) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Cancels job `job` as Ctrl-C cancels a run (see `cancel_job`), in a
/// runtime; the first failure, if any.
pub async fn cancel_job_in_runtime(job: &str) -> Result<(), SlurmError> {
    let mut first_error = None;
    for args in cancel_args(job) {
        let args: Vec<OsString> = args.iter().map(Into::into).collect();
        if let Err(e) = scancel(&args).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The `scancel`s that cancel a job as Ctrl-C cancels a run: a job still
/// waiting leaves the queue; then a running one's `pragma` (the batch
/// step, which execs it) gets SIGINT, not the SIGTERM a plain `scancel`
/// sends, which it would take as a preemption notice and suspend; the
/// bodies it runs are left to it. In this order, a job that starts in
/// between is signalled.
pub(crate) fn cancel_args(job: &str) -> [[&str; 3]; 2] {
    [
        ["--state=PENDING", "--quiet", job],
        ["--signal=INT", "--batch", job],
    ]
}

/// Cancels every job of operation `op` still in the queue (those its
/// coordinator submitted, if it was killed and left them running), outside
/// a runtime; how many there were. No SLURM on this machine: none.
pub fn cancel_jobs_of(op: &str) -> Result<usize, SlurmError> {
    let name = job_name(op);
    let jobs = match run_now("squeue", &["-h", "-r", "-o", "%i", "--name", &name]) {
        Ok(listed) => listed.lines().count(),
        Err(SlurmError::Spawn { .. }) => return Ok(0),
        Err(e) => return Err(e),
    };
    if jobs > 0 {
        run_now("scancel", &["--name", &name])?;
    }
    Ok(jobs)
}

/// Runs a SLURM command and waits: its standard output, or what it said.
fn run_now(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Spawn {
            program: program.into(),
            source,
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(SlurmError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The job name of an operation's jobs (for `scancel --name`).
pub fn job_name(op: &str) -> String {
    format!("pragma-{op}")
}
