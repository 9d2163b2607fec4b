//! `--backend slurm`: iterations run as SLURM jobs, through the shared
//! store; and `pragma __slurm-task DIR`, what each job runs.

mod whole;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pragma_checkpoint::CheckpointLog;
use pragma_executor_slurm::worker::TaskEnd;
use pragma_executor_slurm::{SlurmBackend, SlurmConfig};
use pragma_parse::{Directive, ParsedCell};
use serde::{Deserialize, Serialize};

use pragma_executor_local::FinalStatus;
use pragma_session::{RunRecord, Runner, StartRequest, StoreSpec, Summary};

use crate::args::RunArgs;
use crate::ending::{announce, exit_code, print_summary};
use crate::failure::{Exit, Failure, exit};
use crate::live::{DirLive, FileDigest};
use crate::location::{Location, ShellSession};
use crate::shell::ShellHost;

/// What a task needs to open the store where it runs.
#[derive(Debug, Serialize, Deserialize)]
struct WorkerSetup {
    /// The `--store` value, absolute if it is a directory.
    store: StoreSpec,
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
    let store = match &location.spec {
        StoreSpec::Directory(dir) => StoreSpec::Directory(
            std::path::absolute(dir).map_err(|e| format!("the store `{}`: {e}", args.store))?,
        ),
        bucket => bucket.clone(),
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

/// `pragma __slurm-task DIR`: runs the iteration a SLURM job stands for,
/// with the shell host on the store the setup names.
pub(crate) fn task(dir: &Path) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            errln!("error: cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    let end = runtime.block_on(pragma_executor_slurm::worker::run_task(
        dir,
        async |setup| {
            let setup: WorkerSetup =
                serde_json::from_value(setup).map_err(|e| format!("the task's setup: {e}"))?;
            std::env::set_current_dir(&setup.cwd)
                .map_err(|e| format!("cannot enter `{}`: {e}", setup.cwd.display()))?;
            // Opened, never made: an empty store made here would hide that
            // this node does not see the one the operation is in.
            if let StoreSpec::Directory(dir) = &setup.store
                && !dir.join("store").is_dir()
            {
                return Err(format!(
                    "the store `{}` is not there: it must be on a file system that every node \
                     mounts at the same path (or an s3:// URL)",
                    setup.store
                ));
            }
            let location = Location::open(&setup.store)?;
            Ok((
                location.host()?,
                CheckpointLog::new(location.checkpoints.clone()),
            ))
        },
    ));
    match end {
        TaskEnd::Stopped => exit::CANCELLED,
        TaskEnd::Broken(message) => {
            errln!("error: {message}");
            exit::FAILED
        }
        _ => exit::OK,
    }
}

/// `pragma run --backend slurm` of a repeat cell: the whole operation is one
/// requeueable job, which runs `pragma run` on a copy of the state in the
/// shared directory and resumes from its last checkpoint whenever it
/// starts (after a requeue, a preemption, a cancel). This process submits
/// it, shows its events, and applies the result to the live state.
pub(crate) async fn run_repeat(
    args: &RunArgs,
    cell: &ParsedCell,
    location: &Location,
    backend: &SlurmBackend,
    (host, session): (&ShellHost, &ShellSession),
) -> Exit {
    let live = DirLive::new(&args.state, host.clone());
    let key = pragma_session::run_key(cell.text(), &pragma_session::LiveState::identity(&live));
    let dir = std::path::absolute(location.local.join("slurm").join(format!("repeat-{key}")))
        .map_err(|e| Failure::usage(format!("the store `{}`: {e}", args.store)))?;
    if args.fresh {
        let _ = std::fs::remove_dir_all(&dir);
    }
    prepare(&dir, cell.text(), &args.state, backend)
        .map_err(|e| Failure::usage(format!("cannot prepare `{}`: {e}", dir.display())))?;
    let submitted = read_json::<pragma_session::Digests<FileDigest>>(&dir.join("submitted.json"))
        .ok_or_else(|| {
        Failure::usage(format!("`{}` is damaged; run with --fresh", dir.display()))
    })?;
    let op = match read_json::<String>(&dir.join("op.json")) {
        Some(op) => op,
        None => prepare_op(cell, &dir, host, session)
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
            announce(args, &op, cell.directive());
            if !args.json {
                errln!("operation {op} ended in an earlier SLURM job; its result is applied now");
            }
            outcome
        }
        None => run_job(args, (&dir, &key, cell.text()), backend, session, &op).await?,
    };
    if summary.status == FinalStatus::Succeeded {
        summary = apply_job_result(args, (&dir, &op, submitted), summary, (host, session)).await;
    }
    for warning in &summary.warnings {
        errln!("warning: {warning}");
    }
    if !summary.status.is_resumable() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !args.detached {
        print_summary(&summary, location, args.json);
    }
    Ok(exit_code(&summary))
}

/// Applies the result a repeat job left in its directory to the live
/// state, as a local run applies its own; the record then names the live
/// state, for `pragma apply` to settle what is left.
async fn apply_job_result(
    args: &RunArgs,
    (dir, op, submitted): (&Path, &str, pragma_session::Digests<FileDigest>),
    summary: Summary,
    (host, session): (&ShellHost, &ShellSession),
) -> Summary {
    let live = DirLive::new(&args.state, host.clone());
    let record = RunRecord {
        op: op.to_owned(),
        cell: args.cell.display().to_string(),
        state: pragma_session::LiveState::identity(&live),
        submitted,
        runner: None,
        key: String::new(),
    };
    let mut summary = match host.state_from(&dir.join("state")).await {
        Ok(result) => {
            let settle = crate::args::settle(args.on_conflict);
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
    if let Err(e) = session.records().write_run(&record) {
        summary
            .warnings
            .push(format!("cannot record operation {op}: {e}"));
    }
    summary
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
    let job = job_of((dir, key), args, backend, session, op).await?;
    // Only now: once the record names the job, `wait` and `status` see
    // the operation running.
    announce(args, op, &text.lines().next().unwrap_or_default());
    if !args.json {
        errln!(
            "SLURM job {job} runs the operation; its output is in `{}`",
            dir.join("run.out").display()
        );
    }
    match follow_job(&job, &dir.join("run.out"), args.json).await {
        Some(finished) => {
            let mut summary = finished.summary;
            summary.add_lost_runs(finished.lost_runs, finished.uncounted_runs);
            Ok(summary)
        }
        None => Err(job_failure(&job, dir)),
    }
}

/// The SLURM job that runs the operation of the job directory `dir`: one
/// of an earlier `pragma run` that still runs is followed, not submitted
/// again; otherwise a new one, which the operation's record names from
/// then on (cancel, wait and status follow it from any machine).
async fn job_of(
    (dir, key): (&Path, &str),
    args: &RunArgs,
    backend: &SlurmBackend,
    session: &ShellSession,
    op: &str,
) -> Result<String, Failure> {
    let earlier = read_json::<String>(&dir.join("job.id"));
    if let Some(job) = &earlier
        && pragma_executor_slurm::in_queue(job).await
    {
        if !args.json {
            errln!("following SLURM job {job} of this cell and state");
        }
        return Ok(job.clone());
    }
    if earlier.is_some() && !args.json {
        errln!("resuming on SLURM from the last checkpoint (--fresh starts over)");
    }
    let job = backend
        .submit_whole(&format!("pragma-repeat-{key}"), dir, "__slurm-run")
        .await
        .map_err(|e| Failure::usage(format!("cannot submit to SLURM: {e}")))?;
    let _ = std::fs::write(
        dir.join("job.id"),
        serde_json::to_vec(&job).unwrap_or_default(),
    );
    // The job's own run takes this record over once it starts.
    let records = session.records();
    if let Some(mut record) = records.run::<FileDigest>(op) {
        record.runner = Runner::current(Some(job.clone()));
        let _ = records.write_run(&record);
    }
    Ok(job)
}

/// Why a repeat job that ended without a summary failed: it started pragma
/// and stopped short, or its node could not start pragma at all.
fn job_failure(job: &str, dir: &Path) -> Failure {
    let output = std::fs::read_to_string(dir.join("run.out")).unwrap_or_default();
    Failure::failed(if output.lines().any(|line| line == whole::JOB_START) {
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
    })
}

/// Records the operation of a repeat job before the job starts, so that
/// its id is known at once (`pragma submit` prints it): its submission in
/// the store, and the records by which the job's `pragma run` (cell and
/// state in `dir`) resumes it instead of starting one.
async fn prepare_op(
    cell: &ParsedCell,
    dir: &Path,
    host: &ShellHost,
    session: &ShellSession,
) -> Result<String, String> {
    let job_state = DirLive::new(&dir.join("state"), host.clone());
    let request = StartRequest::new(cell.clone(), dir.join("cell").display().to_string());
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
/// last summary it printed (a requeued job prints one per start), with
/// the work lost to requeues. Ctrl-C or SIGTERM cancels the job: it stops
/// at its last checkpoint.
async fn follow_job(job: &str, output: &Path, json: bool) -> Option<whole::Finished<Summary>> {
    let mut lines = whole::JobLines::<Summary>::default();
    whole::follow(
        job,
        output,
        &mut lines,
        |line, event| match event {
            Some(_) if json => outln!("{line}"),
            Some(event) => {
                if let Some(text) = crate::progress::event_line(event) {
                    errln!("{text}");
                }
            }
            None => {}
        },
        || {
            errln!(
                "cancelling SLURM job {job}: it stops at its last checkpoint; run again to resume"
            )
        },
    )
    .await;
    lines.finished()
}

/// `pragma __slurm-run DIR`: what runs a whole repeat operation in a SLURM
/// job (see [`run_repeat`]): `pragma run` of the cell and state in `dir`,
/// which resumes from its last checkpoint at every start. Marks this
/// start in the job's output.
pub(crate) fn whole_job_run(dir: &Path) -> Result<RunArgs, Failure> {
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
        // SLURM sends SIGTERM before a preemption, a requeue or the time
        // limit, and SIGKILL after its KillWait (30 s by default).
        grace: crate::args::DEFAULT_GRACE_SECONDS,
        fresh: false,
        extend: None,
        // Nobody else writes this copy of the state.
        on_conflict: Some(crate::args::OnConflict::TakeBackground),
        backend: crate::args::Backend::Local,
        partition: None,
        sbatch_args: Vec::new(),
        detached: false,
        slurm_job: std::env::var("SLURM_JOB_ID").ok(),
    };
    // Marks where this start's lines begin in the job's output (see
    // `JobLines`).
    outln!("{}", whole::JOB_START);
    Ok(args)
}
