//! `pragma run CELL --state DIR`: run a shell cell in the background and
//! wait for it, resuming an interrupted run of the same cell and state.
//! `pragma submit` runs the same thing detached (see `control`).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use pragma_executor_local::conflict::{Rule, compare};
use pragma_executor_local::{Config, ExecError, FinalStatus, Handle, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};

use crate::exit;
use crate::location::Location;
use crate::progress::Progress;
use crate::reaper::Reaper;
use crate::records::{Digests, RunRecord, Runner};
use crate::shell::{DirState, copy_tree, digests};

/// Arguments of `pragma run` and `pragma submit`.
#[derive(Args, Clone)]
pub(crate) struct RunArgs {
    /// The cell: a `#pragma` line, then a shell script.
    pub(crate) cell: PathBuf,
    /// The state directory; its files are the variables. On success the
    /// best state's changes are applied to it.
    #[arg(long)]
    pub(crate) state: PathBuf,
    /// Where checkpoints, logs and working copies are kept: a directory,
    /// or s3://BUCKET/PREFIX for the checkpoints (credentials and endpoint
    /// from the AWS_* environment variables; the rest then stays in
    /// `.pragma/remote/`).
    #[arg(long, default_value = ".pragma")]
    pub(crate) store: String,
    /// Iterations that run at once (default: the number of cores).
    #[arg(long)]
    pub(crate) workers: Option<u64>,
    /// Retries of an iteration whose body exits non-zero.
    #[arg(long, default_value_t = 2)]
    pub(crate) retries: u32,
    /// Print events as JSON Lines on standard output.
    #[arg(long)]
    pub(crate) json: bool,
    /// Start over instead of resuming an interrupted run.
    #[arg(long)]
    pub(crate) fresh: bool,
    /// What to do with files changed both by the run and in the state
    /// directory meanwhile (default: apply nothing of them, exit 3).
    #[arg(long, value_enum)]
    pub(crate) on_conflict: Option<OnConflict>,
    /// Where iterations run: here, or on a SLURM cluster (parallel and
    /// async cells; the store must then be reachable from every node).
    #[arg(long, value_enum, default_value = "local")]
    pub(crate) backend: Backend,
    /// The SLURM partition (with --backend slurm).
    #[arg(long)]
    pub(crate) partition: Option<String>,
    /// One more argument for `sbatch` (with --backend slurm); repeatable.
    #[arg(long = "sbatch-arg", allow_hyphen_values = true)]
    pub(crate) sbatch_args: Vec<String>,
    /// Internal: run detached for `pragma submit`, printing the operation
    /// id on standard output once it is submitted.
    #[arg(long, hide = true)]
    pub(crate) detached: bool,
    /// The SLURM job this run is, when it runs a repeat operation as one
    /// job (`pragma __slurm-run`): what `cancel`, `wait` and `status` follow.
    #[arg(skip)]
    pub(crate) slurm_job: Option<String>,
}

/// Where iterations run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// In this process's workers.
    Local,
    /// As SLURM jobs: one job array per operation.
    Slurm,
}

/// How to settle conflicts.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum OnConflict {
    /// Take the run's version.
    TakeBackground,
    /// Keep the state directory's version.
    KeepLive,
}

/// What `run` remembers of a cell and state, to resume.
#[derive(Serialize, Deserialize)]
pub(crate) struct RunIndex {
    /// The operation that runs the cell on the state.
    pub(crate) op: String,
}

/// Runs the command; returns the exit code.
pub(crate) fn run(args: &RunArgs) -> u8 {
    if args.detached {
        // A session of its own: the terminal's hangup and Ctrl-C do not
        // reach a detached run.
        let _ = rustix::process::setsid();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(run_async(args))
}

/// Tells the operation's id once it is submitted: to `pragma submit`
/// (which reads the line and returns), or to the person at the terminal.
pub(crate) fn announce(args: &RunArgs, op: &str, directive: &dyn std::fmt::Display) {
    if args.detached {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{op}").and_then(|()| out.flush());
    } else if !args.json {
        eprintln!("operation {op}: {directive}");
    }
}

pub(crate) fn usage_error(message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    exit::USAGE
}

/// The text of the cell `args` names, once it parses and the state is a
/// directory; otherwise the exit code, the problem reported.
pub(crate) fn checked_cell(args: &RunArgs) -> Result<String, u8> {
    let name = args.cell.display().to_string();
    let text = crate::check::read_cell(&args.cell)
        .map_err(|message| usage_error(format!("cannot read cell `{name}`: {message}")))?;
    if let Err(error) = pragma_parse::parse_cell(&text) {
        eprint!("{}", error.render(&text, &name));
        return Err(exit::USAGE);
    }
    if !args.state.is_dir() {
        return Err(usage_error(format!(
            "the state `{}` is not a directory; create it, or point --state at the directory whose files the cell works on",
            args.state.display()
        )));
    }
    Ok(text)
}

async fn run_async(args: &RunArgs) -> u8 {
    let text = match checked_cell(args) {
        Ok(text) => text,
        Err(code) => return code,
    };
    let Ok(cell) = pragma_parse::parse_cell(&text) else {
        return exit::USAGE; // checked above
    };
    let location = match Location::open(&args.store) {
        Ok(location) => location,
        Err(message) => return usage_error(message),
    };
    let mut host = match location.host() {
        Ok(host) => host,
        Err(message) => return usage_error(message),
    };
    match Reaper::start() {
        Ok(reaper) => host = host.with_reaper(reaper),
        Err(e) => eprintln!(
            "warning: cannot start the process that stops bodies if pragma is killed: {e}"
        ),
    }
    let config = Config {
        workers: args.workers.unwrap_or(Config::default().workers).max(1),
        retries: args.retries,
        // A shell iteration costs milliseconds: recording finished ones a
        // few times a second is cheap, and a crash re-runs little.
        record_interval: std::time::Duration::from_millis(100),
        ..Config::default()
    };
    let slurm = match args.backend {
        Backend::Local => None,
        Backend::Slurm => {
            match crate::slurm::backend(args, &location, &cell.directive, config.workers) {
                Ok(backend) => Some(backend),
                Err(message) => return usage_error(message),
            }
        }
    };
    if let (Some(backend), pragma_parse::Directive::Repeat(_)) = (&slurm, &cell.directive) {
        let executor = location.executor(host.clone(), config);
        return crate::slurm::run_repeat(args, &text, &location, backend, (&host, &executor)).await;
    }
    let executor = match &slurm {
        None => location.executor(host.clone(), config),
        Some(backend) => pragma_executor_local::Executor::with_backend(
            host.clone(),
            location.checkpoints.clone(),
            std::sync::Arc::clone(backend)
                as std::sync::Arc<dyn pragma_executor_local::ExecutionBackend>,
            config,
        ),
    };
    let live = std::fs::canonicalize(&args.state).unwrap_or_else(|_| args.state.clone());

    let index_path = index_path(&location, &text, &live);
    let resumable = match read_index(&index_path) {
        // Cut short by a crash, a kill or a cancel: it goes on.
        Some(index) if !args.fresh => match executor.summary(&index.op).await {
            Ok(summary)
                if summary
                    .status
                    .as_ref()
                    .is_none_or(FinalStatus::is_resumable) =>
            {
                location.read_run(&index.op)
            }
            _ => None,
        },
        _ => None,
    };
    let (handle, mut record) = match resumable {
        Some(mut record) => {
            // An earlier start of this very SLURM job (requeued after its
            // node failed) is no other runner: a job runs one start at once.
            let earlier_start_of_this_job =
                |r: &&Runner| r.slurm_job.is_some() && r.slurm_job == args.slurm_job;
            if let Some(runner) = record
                .runner
                .as_ref()
                .filter(|r| !earlier_start_of_this_job(r) && r.alive())
            {
                return usage_error(format!(
                    "operation {} of this cell and state is already running ({}); \
                     `pragma wait {0}` follows it and `pragma cancel {0}` stops it{}",
                    record.op,
                    runner.describe(),
                    if runner.here() || runner.slurm_job.is_some() {
                        ""
                    } else {
                        " (`pragma cancel --forget` if that machine is gone for good)"
                    }
                ));
            }
            if !args.json && !args.detached {
                eprintln!(
                    "resuming operation {} from its last checkpoint (--fresh starts over)",
                    record.op
                );
            }
            let handle = match executor.resume(&record.op).await {
                Ok(handle) => handle,
                Err(e) => return report_exec_error(e),
            };
            record.runner = Runner::current(args.slurm_job.clone());
            // A cancel's outcome is not the end any more.
            let _ = std::fs::remove_file(location.op_dir(&record.op).join("outcome.json"));
            (handle, record)
        }
        None => {
            let submitted = match digests(&args.state) {
                Ok(digests) => digests,
                Err(e) => {
                    return usage_error(format!(
                        "cannot read the state `{}`: {e}",
                        args.state.display()
                    ));
                }
            };
            let state = match host.state_from(&args.state).await {
                Ok(state) => state,
                Err(e) => {
                    return usage_error(format!(
                        "cannot copy the state `{}`: {e}",
                        args.state.display()
                    ));
                }
            };
            let handle = match executor
                .submit_parsed(cell.directive.clone(), cell.body, state)
                .await
            {
                Ok(handle) => handle,
                Err(e) => return report_exec_error(e),
            };
            let record = RunRecord {
                op: handle.id().to_owned(),
                cell: args.cell.clone(),
                state: live.clone(),
                submitted,
                runner: Runner::current(args.slurm_job.clone()),
            };
            if let Err(e) = write_index(
                &index_path,
                &RunIndex {
                    op: record.op.clone(),
                },
            ) {
                eprintln!("warning: cannot remember the run for resuming: {e}");
            }
            (handle, record)
        }
    };
    if let Err(e) = location.write_run(&record) {
        eprintln!("warning: cannot record operation {}: {e}", record.op);
    }
    let op = record.op.clone();
    announce(args, &op, &cell.directive);
    let progress = Progress::new(args.json || args.detached);
    let outcome = follow(handle, &location, &progress, args.json && !args.detached).await;
    progress.finish();
    if let Some(backend) = &slurm {
        // Tasks of the array that were never asked for (a cancel, a
        // failure) must not go on running.
        if let Err(e) = backend.cancel(&op).await {
            eprintln!("warning: cannot cancel the SLURM jobs of {op}: {e}");
        }
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return report_exec_error(e),
    };
    if !outcome.status.is_resumable() {
        let _ = std::fs::remove_file(&index_path);
    }
    let summary = finish(&location, &record, args.on_conflict, outcome);
    record.runner = None;
    let _ = location.write_run(&record);
    if !args.detached {
        print_summary(&summary, &location, args.json);
    }
    exit_code(&summary)
}

/// Follows the operation to its end, keeping its events in the store;
/// Ctrl-C, SIGTERM (`pragma cancel`) and a hangup cancel it.
async fn follow(
    mut handle: Handle<DirState>,
    location: &Location,
    progress: &Progress,
    json: bool,
) -> Result<Outcome<DirState>, ExecError> {
    let mut events = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(location.events_path(handle.id()))
        .map(std::io::BufWriter::new)
        .ok();
    let (mut terminate, mut hangup) = (
        signal(SignalKind::terminate()).ok(),
        signal(SignalKind::hangup()).ok(),
    );
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let mut cancelled = false;
    loop {
        let stop = async {
            match (&mut terminate, &mut hangup) {
                (Some(terminate), Some(hangup)) => tokio::select! {
                    _ = terminate.recv() => {},
                    _ = hangup.recv() => {},
                },
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => {
                    let line = serde_json::to_string(&event).unwrap_or_default();
                    if let Some(file) = &mut events {
                        // Flushed on the tick: `pragma wait` is a tick behind.
                        let _ = writeln!(file, "{line}");
                    }
                    // The final line is the command's own summary.
                    if json && !matches!(event, pragma_executor_local::Event::Finished { .. }) {
                        println!("{line}");
                    }
                    progress.event(&event, &handle.status());
                }
                None => break,
            },
            _ = tick.tick() => {
                if let Some(file) = &mut events {
                    let _ = file.flush();
                }
                progress.update(&handle.status());
            }
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                progress.say("cancelling: workers stop, the last checkpoint stays; run again to resume");
                handle.cancel();
            }
            () = stop, if !cancelled => {
                cancelled = true;
                progress.say("cancelling (asked by a signal): workers stop, the last checkpoint stays");
                handle.cancel();
            }
        }
    }
    if let Some(file) = &mut events {
        let _ = file.flush();
    }
    handle.wait().await
}

/// Applies the result where there is no conflict, keeps what is left for
/// `pragma apply`, and returns the summary (the `finished` JSON line),
/// which is also saved as the operation's outcome.
fn finish(
    location: &Location,
    record: &RunRecord,
    on_conflict: Option<OnConflict>,
    outcome: Outcome<DirState>,
) -> Value {
    let mut conflicts: Vec<String> = Vec::new();
    let mut apply_error = None;
    if let (FinalStatus::Succeeded, Some(best)) = (&outcome.status, &outcome.best) {
        match apply(
            &record.state,
            best.state.path(),
            &record.submitted,
            on_conflict,
        ) {
            Ok(left) => conflicts = left,
            Err(e) => {
                apply_error = Some(format!(
                    "cannot apply the result to `{}`: {e}",
                    record.state.display()
                ))
            }
        }
        if !conflicts.is_empty() || apply_error.is_some() {
            // Keep the best state for `pragma apply`.
            let kept = location.result_dir(&outcome.op);
            let _ = std::fs::remove_dir_all(&kept);
            if let Err(e) =
                std::fs::create_dir_all(&kept).and_then(|()| copy_tree(best.state.path(), &kept))
            {
                eprintln!(
                    "warning: cannot keep the result for `pragma apply` in `{}`: {e}",
                    kept.display()
                );
            }
        }
    }
    let best = outcome
        .best
        .as_ref()
        .map(|b| json!({ "iteration": b.iteration, "score": b.score }));
    let failed: Vec<_> = outcome
        .failed_iterations
        .iter()
        .map(|(i, e)| json!({ "iteration": i, "error": e }))
        .collect();
    let mut summary = json!({
        "event": "finished",
        "op": outcome.op,
        "status": outcome.status.name(),
        "reason": match &outcome.status {
            FinalStatus::Failed { reason } => Some(reason.clone()),
            FinalStatus::Interrupted { message, iteration } => Some(format!("iteration {iteration}: {message}")),
            FinalStatus::Stopped { reason } => Some(reason.clone()),
            _ => None,
        },
        "best": best,
        "iterations_run": outcome.usage.iterations_run,
        "failed_iterations": failed,
        "conflicts": conflicts,
        "usage": outcome.usage,
    });
    if let Some(error) = apply_error {
        summary["apply_error"] = json!(error);
    }
    // A cancelled run's outcome stands until the run is resumed.
    if let Err(e) = location.write_outcome(&outcome.op, &summary) {
        eprintln!("warning: cannot record the outcome of {}: {e}", outcome.op);
    }
    summary
}

/// The exit code a summary stands for.
pub(crate) fn exit_code(summary: &Value) -> u8 {
    let conflicts = summary["conflicts"]
        .as_array()
        .is_some_and(|c| !c.is_empty());
    match summary["status"].as_str() {
        Some("succeeded") if summary.get("apply_error").is_some() => exit::FAILED,
        Some("succeeded") if conflicts => exit::CONFLICTS,
        Some("succeeded") => exit::OK,
        Some("cancelled") => exit::CANCELLED,
        Some("interrupted") => exit::INTERRUPTED,
        _ => exit::FAILED,
    }
}

/// Prints a summary: the JSON line, or text for a person.
pub(crate) fn print_summary(summary: &Value, location: &Location, json: bool) {
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(out, "{summary}");
        return;
    }
    let op = summary["op"].as_str().unwrap_or("?");
    let reason = summary["reason"].as_str().unwrap_or("");
    let _ = match summary["status"].as_str() {
        Some("succeeded") => match summary["best"].as_object() {
            Some(best) => writeln!(
                out,
                "succeeded: best iteration {}{}",
                best["iteration"],
                best.get("score")
                    .filter(|s| !s.is_null())
                    .map(|s| format!(", score {s}"))
                    .unwrap_or_default()
            ),
            None => writeln!(out, "succeeded"),
        },
        Some("failed") => writeln!(out, "failed: {reason}"),
        Some("cancelled") => writeln!(out, "cancelled: nothing applied; run again to resume"),
        Some("stopped") => writeln!(
            out,
            "stopped, the store is full: {reason}; nothing applied, the last checkpoint stays: make room and run again to resume"
        ),
        Some("interrupted") => writeln!(
            out,
            "interrupted: {reason}; the body asked for interactive input, nothing applied"
        ),
        other => writeln!(out, "ended: {}", other.unwrap_or("?")),
    };
    for failed in summary["failed_iterations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let _ = writeln!(
            out,
            "  iteration {} failed: {}",
            failed["iteration"],
            failed["error"].as_str().unwrap_or("")
        );
    }
    let usage = &summary["usage"];
    let _ = writeln!(
        out,
        "  {} iterations run, {} lost to preemption, {:.1} worker-seconds, {} bytes checkpointed",
        usage["iterations_run"],
        usage["work_lost"],
        usage["worker_seconds"].as_f64().unwrap_or(0.0),
        usage["bytes_checkpointed"]
    );
    if let Some(error) = summary["apply_error"].as_str() {
        let _ = writeln!(out, "error: {error}");
    }
    let conflicts: Vec<&str> = summary["conflicts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !conflicts.is_empty() {
        let _ = writeln!(
            out,
            "conflicts: changed both by the run and in the state directory meanwhile, not applied: {}",
            conflicts.join(", ")
        );
        let store = if location.shown == ".pragma" {
            String::new()
        } else {
            format!(" --store {}", crate::control::quoted(&location.shown))
        };
        let _ = writeln!(
            out,
            "  settle them with `pragma apply {op}{store} --take background` or `pragma apply {op}{store} --keep-live`"
        );
    }
}

/// Applies the result's changes to the live directory; returns the
/// conflicts left unapplied.
pub(crate) fn apply(
    live: &Path,
    result: &Path,
    submitted: &Digests,
    on_conflict: Option<OnConflict>,
) -> std::io::Result<Vec<String>> {
    let comparison = compare(submitted, &digests(live)?, &digests(result)?);
    let rule = match on_conflict {
        Some(OnConflict::TakeBackground) => Rule::TakeBackground,
        Some(OnConflict::KeepLive) => Rule::KeepLive,
        None => Rule::Fail,
    };
    let (changes, left) = match comparison.resolve(&Default::default(), rule) {
        Ok(changes) => (changes, Vec::new()),
        Err(unresolved) => (comparison.apply.clone(), unresolved.0),
    };
    for (name, change) in changes {
        let target = live.join(&name);
        match change {
            Some(_) => {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                // Write beside, then rename: the live file is never half-written.
                let temporary = target.with_file_name(format!(
                    ".{}.pragma-apply",
                    target
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default()
                ));
                std::fs::copy(result.join(&name), &temporary)?;
                std::fs::rename(&temporary, &target)?;
            }
            None => match std::fs::remove_file(&target) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
        }
    }
    Ok(left)
}

fn report_exec_error(error: ExecError) -> u8 {
    eprintln!("error: {error}");
    match error {
        ExecError::Directive(_) | ExecError::Unsaveable(_) => exit::USAGE,
        _ => exit::FAILED,
    }
}

/// The index file of a cell and state: the same cell on the same state
/// resumes; anything else starts a new operation.
pub(crate) fn index_path(location: &Location, cell: &str, live: &Path) -> PathBuf {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(cell.as_bytes());
    hasher.update(live.to_string_lossy().as_bytes());
    location
        .local
        .join("runs")
        .join(format!("{:08x}.json", hasher.finalize()))
}

fn read_index(path: &Path) -> Option<RunIndex> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub(crate) fn write_index(path: &Path, index: &RunIndex) -> std::io::Result<()> {
    crate::records::write_atomically(
        path,
        &serde_json::to_vec(index).map_err(std::io::Error::other)?,
    )
}
