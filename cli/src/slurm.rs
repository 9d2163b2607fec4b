//! `--backend slurm`: iterations run as SLURM jobs, through the shared
//! store; and `pragma __slurm-task DIR`, what each job runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pragma_checkpoint::{CheckpointLog, Key};
use pragma_executor_local::{RemoteOutput, RemoteReport, RunError, run_spec};
use pragma_executor_slurm::{SlurmBackend, SlurmConfig, task_files, write_report};
use pragma_parse::Directive;
use serde::{Deserialize, Serialize};

use pragma_executor_local::FinalStatus;
use pragma_session::{JobQueue, RunRecord, Runner, StartRequest, Summary};

use crate::live::{DirLive, FileDigest};
use crate::location::{Location, ShellSession};
use crate::run::RunArgs;
use crate::shell::ShellHost;
use crate::{Exit, Failure, exit};

/// SLURM as the lifecycle asks it whether a runner that is a job still
/// runs.
pub(crate) struct SlurmJobs;

impl JobQueue for SlurmJobs {
    fn name(&self) -> &str {
        "SLURM"
    }

    fn queued(&self, job: &str) -> Option<bool> {
        pragma_executor_slurm::job_queued(job)
    }
}

/// What a task needs to open the store where it runs.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerSetup {
    /// The `--store` value, absolute if it is a directory.
    store: String,
    /// The directory `pragma run` ran in (an S3 store's local files are
    /// relative to it).
    cwd: std::path::PathBuf,
    /// A whole repeat operation: `--retries` and `--workers`.
    #[serde(default)]
    retries: u32,
    #[serde(default)]
    workers: Option<u64>,
}

/// The backend for `args`, or why there is none.
pub(crate) fn backend(
    args: &RunArgs,
    location: &Location,
    directive: &Directive,
    workers: u64,
) -> Result<Arc<SlurmBackend>, String> {
    let cwd = std::env::current_dir().map_err(|e| format!("the current directory: {e}"))?;
    let store = if args.store.contains("://") {
        args.store.clone()
    } else {
        std::path::absolute(&args.store)
            .map_err(|e| format!("the store `{}`: {e}", args.store))?
            .to_string_lossy()
            .into_owned()
    };
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the pragma executable: {e}"))?;
    let shared_dir = std::path::absolute(location.local.join("slurm"))
        .map_err(|e| format!("the store `{}`: {e}", args.store))?;
    // The array runs no more at once than the executor would.
    let workers = match directive {
        Directive::Parallel(parallel) => {
            parallel.parallel_runs().map_or(workers, |p| p.min(workers))
        }
        _ => workers,
    };
    let config = SlurmConfig {
        workers,
        shared_dir,
        worker_command: vec![exe.into(), "__slurm-task".into()],
        partition: args.partition.clone(),
        sbatch_args: args.sbatch_args.clone(),
        poll: Duration::from_millis(200),
    };
    let setup = serde_json::to_value(WorkerSetup {
        store,
        cwd,
        retries: args.retries,
        workers: args.workers,
    })
    .map_err(|e| e.to_string())?;
    let backend = SlurmBackend::new(config).map_err(|e| {
        format!(
            "cannot use SLURM: {e}; the store `{}` must also be reachable from every node \
             (a shared directory, or an s3:// URL)",
            args.store
        )
    })?;
    Ok(Arc::new(backend.with_setup(setup)))
}

/// How long a task whose body failed waits for a SIGTERM of its own before
/// it reports the failure (see [`task`]).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// `pragma __slurm-task DIR`: runs the iteration a SLURM job stands for.
pub(crate) fn task(dir: &Path) -> u8 {
    let files = match task_files(dir) {
        Ok(Some(files)) => files,
        // Done already (a requeued task): nothing runs twice.
        Ok(None) => return exit::OK,
        Err(e) => {
            errln!("error: the task in `{}`: {e}", dir.display());
            return exit::FAILED;
        }
    };
    let report_path = files.report.clone();
    let earlier_runs = files.earlier_runs;
    let mut output = match run_task(files) {
        Ok(Some(output)) => output,
        Ok(None) => return exit::CANCELLED,
        // What keeps this node from running the iteration is its failure,
        // told in the report: the retry budget applies, and the operation's
        // failures name the node and the cause.
        Err(message) => {
            let node = pragma_session::this_host();
            errln!("error: {message}");
            RemoteOutput {
                result: Err(RunError::Failed(format!("on node {node}: {message}"))),
                evaluation: None,
                seconds: 0.0,
                lost_runs: 0,
            }
        }
    };
    output.lost_runs = earlier_runs;
    match write_report(&report_path, &RemoteReport::from(&output)) {
        Ok(()) => exit::OK,
        Err(e) => {
            errln!("error: cannot write `{}`: {e}", report_path.display());
            exit::FAILED
        }
    }
}

/// Runs the iteration of a task; `None` if SLURM stopped it (a requeue, a
/// preemption, a cancel), or why the node cannot run it.
fn run_task(files: pragma_executor_slurm::TaskFiles) -> Result<Option<RemoteOutput>, String> {
    let pragma_executor_slurm::TaskFiles { spec, setup, .. } = files;
    let setup: WorkerSetup =
        serde_json::from_value(setup.worker).map_err(|e| format!("the task's setup: {e}"))?;
    std::env::set_current_dir(&setup.cwd)
        .map_err(|e| format!("cannot enter `{}`: {e}", setup.cwd.display()))?;
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        // Opened, never made: an empty store made here would hide that
        // this node does not see the one the operation is in.
        if !setup.store.contains("://") && !Path::new(&setup.store).join("store").is_dir() {
            return Err(format!(
                "the store `{}` is not there: it must be on a file system that every node \
                 mounts at the same path (or an s3:// URL)",
                setup.store
            ));
        }
        let location = Location::open(&setup.store)?;
        let host = location.host()?;
        let key = Key::parse(&format!(
            "remote/{}/{}-{}",
            spec.op, spec.iteration, spec.attempt
        ))
        .map_err(|e| e.to_string())?;
        let log = CheckpointLog::new(location.checkpoints.clone());
        // SLURM stops a job it requeues, preempts or cancels with SIGTERM to
        // each of its processes. A run stopped so is not the body's failure:
        // it leaves no report, and the task's next start runs it again.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
        let output = tokio::select! {
            output = run_spec(&host, &log, &spec, &key) => output,
            _ = terminate.recv() => return Ok(None),
        };
        if output.result.is_err() {
            // The body may have died of the signal a moment before this
            // process gets its own.
            let signalled = tokio::time::timeout(STOP_GRACE, terminate.recv()).await;
            if signalled.is_ok() {
                return Ok(None);
            }
        }
        Ok(Some(output))
    })
}

/// `pragma run --backend slurm` of a repeat cell: the whole operation is one
/// requeueable job, which runs `pragma run` on a copy of the state in the
/// shared directory and resumes from its last checkpoint whenever it
/// starts (after a requeue, a preemption, a cancel). This process submits
/// it, shows its events, and applies the result to the live state.
pub(crate) async fn run_repeat(
    args: &RunArgs,
    text: &str,
    location: &Location,
    backend: &SlurmBackend,
    (host, session): (&ShellHost, &ShellSession),
) -> Exit {
    let live = DirLive::new(&args.state, host.clone());
    let key = pragma_session::run_key(text, &pragma_session::LiveState::identity(&live));
    let dir = std::path::absolute(location.local.join("slurm").join(format!("repeat-{key}")))
        .map_err(|e| Failure::usage(format!("the store `{}`: {e}", args.store)))?;
    if args.fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    prepare(&dir, text, &args.state, backend)
        .map_err(|e| Failure::usage(format!("cannot prepare `{}`: {e}", dir.display())))?;
    let submitted = read_json::<pragma_session::Digests<FileDigest>>(&dir.join("submitted.json"))
        .ok_or_else(|| {
        Failure::usage(format!("`{}` is damaged; run with --fresh", dir.display()))
    })?;
    let op = match read_json::<String>(&dir.join("op.json")) {
        Some(op) => op,
        None => prepare_op(text, &dir, host, session)
            .await
            .map_err(Failure::usage)?,
    };
    // Ended in an earlier job, its coordinator gone before it applied the
    // result: the result is applied now, and nothing runs again.
    let ended = session
        .records()
        .outcome(&op)
        .filter(|outcome| !outcome.status.is_resumable());
    let mut summary = match ended {
        Some(outcome) => {
            crate::run::announce(args, &op, &text.lines().next().unwrap_or_default());
            if !args.json {
                errln!("operation {op} ended in an earlier SLURM job; its result is applied now");
            }
            outcome
        }
        None => run_job(args, (&dir, &key, text), backend, session, &op).await?,
    };
    if summary.status == FinalStatus::Succeeded {
        let record = RunRecord {
            op: op.clone(),
            cell: args.cell.display().to_string(),
            state: pragma_session::LiveState::identity(&live),
            submitted,
            runner: None,
        };
        let result = host.state_from(&dir.join("state")).await;
        summary = match result {
            Ok(result) => {
                let settle = crate::run::settle(args.on_conflict);
                session
                    .settle(&record, summary, Some(&result), &live, &settle)
                    .await
            }
            Err(e) => {
                let mut summary = summary;
                summary.apply_error = Some(format!(
                    "cannot read the result in `{}`: {e}",
                    dir.join("state").display()
                ));
                summary
            }
        };
        // `pragma apply` settles what is left on the live state.
        if let Err(e) = session.records().write_run(&record) {
            summary
                .warnings
                .push(format!("cannot record operation {op}: {e}"));
        }
    }
    for warning in &summary.warnings {
        errln!("warning: {warning}");
    }
    if !summary.status.is_resumable() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !args.detached {
        crate::run::print_summary(&summary, location, args.json);
    }
    Ok(crate::run::exit_code(&summary))
}

/// Submits the job of a repeat operation, or follows the one that runs
/// it already, to its end; its last summary, or the exit code.
async fn run_job(
    args: &RunArgs,
    (dir, key, text): (&Path, &str, &str),
    backend: &SlurmBackend,
    session: &ShellSession,
    op: &str,
) -> Result<Summary, Failure> {
    // A job of an earlier `pragma run` that still runs is followed, not
    // submitted again.
    let job = match read_json::<String>(&dir.join("job.id")) {
        Some(job) if pragma_executor_slurm::in_queue(&job).await => {
            if !args.json {
                errln!("following SLURM job {job} of this cell and state");
            }
            job
        }
        earlier => {
            if earlier.is_some() && !args.json {
                errln!("resuming on SLURM from the last checkpoint (--fresh starts over)");
            }
            match backend
                .submit_whole(&format!("pragma-repeat-{key}"), dir, "__slurm-run")
                .await
            {
                Ok(job) => {
                    let _ = std::fs::write(
                        dir.join("job.id"),
                        serde_json::to_vec(&job).unwrap_or_default(),
                    );
                    // Cancel, wait and status follow the job from here on,
                    // from any machine; the job's own run takes this
                    // record over once it starts.
                    let records = session.records();
                    if let Some(mut record) = records.run::<FileDigest>(op) {
                        record.runner = Runner::current(Some(job.clone()));
                        let _ = records.write_run(&record);
                    }
                    job
                }
                Err(e) => return Err(Failure::usage(format!("cannot submit to SLURM: {e}"))),
            }
        }
    };
    // Only now: once the record names the job, `wait` and `status` see
    // the operation running.
    crate::run::announce(args, op, &text.lines().next().unwrap_or_default());
    if !args.json {
        errln!(
            "SLURM job {job} runs the operation; its output is in `{}`",
            dir.join("run.out").display()
        );
    }
    match follow_job(&job, &dir.join("run.out"), args.json).await {
        Some(summary) => Ok(summary),
        None => {
            let output = std::fs::read_to_string(dir.join("run.out")).unwrap_or_default();
            Err(Failure::failed(
                if output.lines().any(|line| line == JOB_START) {
                    format!(
                        "SLURM job {job} ended without finishing the operation; see `{}`",
                        dir.join("run.out").display()
                    )
                } else {
                    format!(
                        "SLURM job {job} ended without starting pragma: its node could not \
                     reach `{}` or could not run `{}`. The store must be on a file system that \
                     every node mounts at the same path, and the pragma binary too; the job's \
                     own output, if SLURM could write it, is `{}`",
                        dir.display(),
                        std::env::current_exe().unwrap_or_default().display(),
                        dir.join("run.out").display()
                    )
                },
            ))
        }
    }
}

/// Records the operation of a repeat job before the job starts, so that
/// its id is known at once (`pragma submit` prints it): its submission in
/// the store, and the records by which the job's `pragma run` (cell and
/// state in `dir`) resumes it instead of starting one.
async fn prepare_op(
    text: &str,
    dir: &Path,
    host: &ShellHost,
    session: &ShellSession,
) -> Result<String, String> {
    let job_state = DirLive::new(&dir.join("state"), host.clone());
    let request = StartRequest::new(text, dir.join("cell").display().to_string());
    let op = session
        .prepare(&request, &job_state)
        .await
        .map_err(|e| e.to_string())?;
    pragma_session::write_atomically(
        &dir.join("op.json"),
        &serde_json::to_vec(&op).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("cannot record operation {op}: {e}"))?;
    Ok(op)
}

/// The job directory of a repeat operation: the cell, a copy of the state
/// and its digests at submission; kept as it is if it exists (a resume).
fn prepare(dir: &Path, text: &str, state: &Path, backend: &SlurmBackend) -> std::io::Result<()> {
    if dir.join("submitted.json").exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("state"))?;
    crate::shell::copy_tree(state, &dir.join("state"))?;
    std::fs::write(dir.join("cell"), text)?;
    std::fs::write(
        dir.join("setup.json"),
        serde_json::to_vec(&backend_setup(backend))?,
    )?;
    let digests = crate::live::digests(state)?;
    pragma_session::write_atomically(&dir.join("submitted.json"), &serde_json::to_vec(&digests)?)
}

fn backend_setup(backend: &SlurmBackend) -> pragma_executor_slurm::TaskSetup {
    pragma_executor_slurm::TaskSetup {
        worker: backend.setup().clone(),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Shows the events the job prints until it leaves the queue; returns the
/// last `finished` line it printed (a requeued job prints one per start),
/// with the work lost to requeues added to its usage.
/// Ctrl-C or SIGTERM cancels the job: it stops at its last checkpoint.
async fn follow_job(job: &str, output: &Path, json: bool) -> Option<Summary> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut offset = 0usize;
    let mut lines = JobLines::default();
    let mut cancelled = false;
    loop {
        // After the job leaves the queue, one more read: its last lines may
        // have landed meanwhile.
        let left = !pragma_executor_slurm::in_queue(job).await;
        let text = std::fs::read_to_string(output).unwrap_or_default();
        let complete = if left {
            text.len()
        } else {
            text.get(offset..)
                .and_then(|rest| rest.rfind('\n'))
                .map_or(offset, |i| offset + i + 1)
        };
        for line in text.get(offset..complete).unwrap_or_default().lines() {
            lines.read(line, json);
        }
        offset = complete;
        if left {
            return lines.finished();
        }
        let stop = async {
            match &mut terminate {
                Some(terminate) => {
                    terminate.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                errln!("cancelling SLURM job {job}: it stops at its last checkpoint; run again to resume");
                let _ = pragma_executor_slurm::scancel(&[job.into()]).await;
            }
            () = stop, if !cancelled => {
                cancelled = true;
                let _ = pragma_executor_slurm::scancel(&[job.into()]).await;
            }
        }
    }
}

/// The line `pragma __slurm-run` prints each time the job starts.
const JOB_START: &str = r#"{"job_start":true}"#;

/// What the output of a repeat job says, read line by line: the events to
/// show, the last summary, and the work lost to requeues.
#[derive(Default)]
struct JobLines {
    /// The last `finished` summary.
    finished: Option<Summary>,
    /// Runs lost in the starts before this one.
    lost: u64,
    /// Those of them that no record of the operation counts.
    uncounted: u64,
    /// This start: iterations done by its last checkpoint, the iterations
    /// it started, and whether it finished.
    done: u64,
    started: Vec<u64>,
    ended: bool,
}

impl JobLines {
    /// Reads one line, printing it (`json`) or its event line.
    fn read(&mut self, line: &str, json: bool) {
        if line == JOB_START {
            // The start before this one did not finish the operation: the
            // runs it began after its last checkpoint run again.
            let done = self.done;
            let cut = self.started.iter().filter(|i| **i >= done).count() as u64;
            self.lost += cut;
            // A start stopped by SIGTERM (a requeue, a preemption, a cancel)
            // ends as cancelled and its record counts its runs; a start
            // killed outright never wrote them down.
            if !self.ended {
                self.uncounted += cut;
            }
            self.done = 0;
            self.started.clear();
            self.ended = false;
            return;
        }
        // The command's own summary, not the executor's `finished` event.
        if line.contains("\"usage\"")
            && let Ok(summary) = serde_json::from_str::<Summary>(line)
        {
            self.finished = Some(summary);
            self.ended = true;
            return;
        }
        let Ok(event) = serde_json::from_str::<pragma_executor_local::Event>(line) else {
            return;
        };
        match &event {
            pragma_executor_local::Event::IterationStarted { iteration, .. } => {
                self.started.push(*iteration)
            }
            pragma_executor_local::Event::Resumed {
                iterations_done, ..
            }
            | pragma_executor_local::Event::CheckpointCommitted {
                iterations_done, ..
            } => self.done = self.done.max(*iterations_done),
            _ => {}
        }
        if json {
            outln!("{line}");
        } else if let Some(line) = crate::progress::event_line(&event) {
            errln!("{line}");
        }
    }

    /// The last summary, counting the runs lost to requeues as lost work,
    /// and as runs where no record counted them.
    fn finished(self) -> Option<Summary> {
        let mut summary = self.finished?;
        summary.add_lost_runs(self.lost, self.uncounted);
        Some(summary)
    }
}

/// `pragma __slurm-run DIR`: runs a whole repeat operation in a SLURM job
/// (see [`run_repeat`]); a restart resumes it from its last checkpoint.
pub(crate) fn run_whole(dir: &Path) -> Exit {
    let setup: Option<pragma_executor_slurm::TaskSetup> = read_json(&dir.join("setup.json"));
    let setup = setup
        .and_then(|s| serde_json::from_value::<WorkerSetup>(s.worker).ok())
        .ok_or_else(|| Failure::failed(format!("no usable setup in `{}`", dir.display())))?;
    std::env::set_current_dir(&setup.cwd)
        .map_err(|e| Failure::failed(format!("cannot enter `{}`: {e}", setup.cwd.display())))?;
    let args = RunArgs {
        cell: dir.join("cell"),
        state: dir.join("state"),
        store: setup.store,
        workers: setup.workers,
        retries: setup.retries,
        json: true,
        fresh: false,
        // Nobody else writes this copy of the state.
        on_conflict: Some(crate::run::OnConflict::TakeBackground),
        backend: crate::run::Backend::Local,
        partition: None,
        sbatch_args: Vec::new(),
        detached: false,
        slurm_job: std::env::var("SLURM_JOB_ID").ok(),
    };
    // Marks where this start's lines begin in the job's output (see
    // `JobLines`).
    outln!("{JOB_START}");
    crate::run::run(&args)
}

/// Cancels SLURM job `job`.
pub(crate) fn cancel_job(job: &str) -> Result<(), String> {
    let cancelled = std::process::Command::new("scancel").arg(job).output();
    match cancelled {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "scancel {job}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run scancel {job}: {e}")),
    }
}

/// Cancels the SLURM jobs of `op` still in the queue; how many there were.
pub(crate) fn cancel_orphaned_jobs(op: &str) -> Result<usize, String> {
    let name = pragma_executor_slurm::job_name(op);
    let listed = std::process::Command::new("squeue")
        .args(["-h", "-r", "-o", "%i", "--name", &name])
        .output();
    let jobs = match listed {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).lines().count()
        }
        Ok(output) => {
            return Err(format!(
                "squeue --name {name}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        // No SLURM here: nothing of it to cancel from this machine.
        Err(_) => return Ok(0),
    };
    if jobs > 0 {
        let cancelled = std::process::Command::new("scancel")
            .args(["--name", &name])
            .output();
        match cancelled {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                return Err(format!(
                    "scancel --name {name}: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("cannot run scancel: {e}")),
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> String {
        line.replace('\'', "\"")
    }

    #[test]
    fn runs_after_the_last_checkpoint_of_a_start_cut_short_are_lost() {
        let mut lines = JobLines::default();
        let output = [
            JOB_START.to_owned(),
            event("{'event':'iteration_started','op':'o','iteration':0,'attempt':1}"),
            event("{'event':'iteration_started','op':'o','iteration':1,'attempt':1}"),
            // Iteration 2 starts before the checkpoint of 0 and 1 is durable.
            event("{'event':'iteration_started','op':'o','iteration':2,'attempt':1}"),
            event(
                "{'event':'checkpoint_committed','op':'o','generation':3,'iterations_done':2,'score':1.0,'recorded':[]}",
            ),
            event("{'event':'iteration_started','op':'o','iteration':3,'attempt':1}"),
            // Requeued here: iterations 2 and 3 run again.
            JOB_START.to_owned(),
            event("{'event':'resumed','op':'o','iterations_done':2}"),
            event("{'event':'iteration_started','op':'o','iteration':2,'attempt':1}"),
            // Requeued before any checkpoint: 2 is lost again.
            JOB_START.to_owned(),
            event("{'event':'resumed','op':'o','iterations_done':2}"),
            event("{'event':'iteration_started','op':'o','iteration':2,'attempt':1}"),
            event("{'event':'iteration_started','op':'o','iteration':3,'attempt':1}"),
            event(
                "{'event':'finished','op':'o','status':'succeeded','best':null,'iterations_run':4,'usage':{'iterations_run':4,'work_lost':0}}",
            ),
        ];
        for line in &output {
            lines.read(line, false);
        }
        let summary = serde_json::to_value(lines.finished().unwrap()).unwrap();
        assert_eq!(summary["usage"]["work_lost"], 3);
        assert_eq!(summary["usage"]["iterations_run"], 7);
        assert_eq!(summary["iterations_run"], 7);
    }

    #[test]
    fn a_cancelled_start_loses_its_runs_after_the_checkpoint_and_counted_them() {
        let mut lines = JobLines::default();
        for line in [
            JOB_START.to_owned(),
            event("{'event':'iteration_started','op':'o','iteration':0,'attempt':1}"),
            event(
                "{'event':'finished','op':'o','status':'cancelled','best':null,'iterations_run':1,'usage':{'iterations_run':1,'work_lost':0}}",
            ),
            JOB_START.to_owned(),
            event("{'event':'iteration_started','op':'o','iteration':0,'attempt':1}"),
            event(
                "{'event':'finished','op':'o','status':'succeeded','best':null,'iterations_run':2,'usage':{'iterations_run':2,'work_lost':0}}",
            ),
        ] {
            lines.read(&line, false);
        }
        let summary = serde_json::to_value(lines.finished().unwrap()).unwrap();
        assert_eq!(summary["status"], "succeeded");
        assert_eq!(summary["usage"]["work_lost"], 1);
        assert_eq!(summary["usage"]["iterations_run"], 2);
        assert_eq!(summary["iterations_run"], 2);
    }
}
