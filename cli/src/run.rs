//! `pragma run CELL --state DIR`: run a shell cell in the background and
//! wait for it, resuming an interrupted run of the same cell and state.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use pragma_checkpoint::LocalStore;
use pragma_executor_local::conflict::{Rule, compare};
use pragma_executor_local::{Config, Event, ExecError, Executor, FinalStatus, Outcome};
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::shell::{DirState, ShellHost, digests};

/// Arguments of `pragma run`.
#[derive(Args)]
pub(crate) struct RunArgs {
    /// The cell: a `#pragma` line, then a shell script.
    cell: PathBuf,
    /// The state directory; its files are the variables. On success the
    /// best state's changes are applied to it.
    #[arg(long)]
    state: PathBuf,
    /// Where checkpoints and working copies are kept.
    #[arg(long, default_value = ".pragma")]
    store: PathBuf,
    /// Iterations that run at once (default: the number of cores).
    #[arg(long)]
    workers: Option<u64>,
    /// Retries of an iteration whose body exits non-zero.
    #[arg(long, default_value_t = 2)]
    retries: u32,
    /// Print events as JSON Lines on standard output.
    #[arg(long)]
    json: bool,
    /// Start over instead of resuming an interrupted run.
    #[arg(long)]
    fresh: bool,
    /// What to do with files changed both by the run and in the state
    /// directory meanwhile (default: apply nothing of them, exit 3).
    #[arg(long, value_enum)]
    on_conflict: Option<OnConflict>,
}

/// How to settle conflicts.
#[derive(Clone, Copy, ValueEnum)]
enum OnConflict {
    /// Take the run's version.
    TakeBackground,
    /// Keep the state directory's version.
    KeepLive,
}

/// What `run` remembers between invocations, to resume.
#[derive(Serialize, Deserialize)]
struct RunIndex {
    op: String,
    /// File digests of the state at submission, for the conflict check.
    submitted: BTreeMap<String, (u64, u32)>,
}

/// Runs the command; returns the exit code.
pub(crate) fn run(args: &RunArgs) -> u8 {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return exit::FAILED;
        }
    };
    runtime.block_on(run_async(args))
}

fn usage_error(message: String) -> u8 {
    eprintln!("error: {message}");
    exit::USAGE
}

async fn run_async(args: &RunArgs) -> u8 {
    let name = args.cell.display().to_string();
    let text = match crate::check::read_cell(&args.cell) {
        Ok(text) => text,
        Err(message) => return usage_error(format!("cannot read cell `{name}`: {message}")),
    };
    let cell = match pragma_parse::parse_cell(&text) {
        Ok(cell) => cell,
        Err(error) => {
            eprint!("{}", error.render(&text, &name));
            return exit::USAGE;
        }
    };
    if !args.state.is_dir() {
        return usage_error(format!(
            "the state `{}` is not a directory; create it, or point --state at the directory whose files the cell works on",
            args.state.display()
        ));
    }
    let (host, store) = match (
        ShellHost::new(args.store.join("work"), args.store.join("logs")),
        LocalStore::new(args.store.join("store")),
    ) {
        (Ok(host), Ok(store)) => (host, store),
        (Err(e), _) => {
            return usage_error(format!(
                "cannot use the store `{}`: {e}",
                args.store.display()
            ));
        }
        (_, Err(e)) => {
            return usage_error(format!(
                "cannot use the store `{}`: {e}",
                args.store.display()
            ));
        }
    };
    let config = Config {
        workers: args.workers.unwrap_or(Config::default().workers).max(1),
        retries: args.retries,
        ..Config::default()
    };
    let executor = Executor::new(host.clone(), store, config);

    let index_path = index_path(&args.store, &text, &args.state);
    let resumable = match read_index(&index_path) {
        Some(index) if !args.fresh => match executor.unfinished().await {
            Ok(unfinished) if unfinished.contains(&index.op) => Some(index),
            _ => None,
        },
        _ => None,
    };
    let (handle, index) = match resumable {
        Some(index) => {
            if !args.json {
                eprintln!(
                    "resuming operation {} from its last checkpoint (--fresh starts over)",
                    index.op
                );
            }
            match executor.resume(&index.op).await {
                Ok(handle) => (handle, index),
                Err(e) => return report_exec_error(e),
            }
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
            let index = RunIndex {
                op: handle.id().to_owned(),
                submitted,
            };
            if let Err(e) = write_index(&index_path, &index) {
                eprintln!("warning: cannot remember the run for resuming: {e}");
            }
            (handle, index)
        }
    };
    let op = handle.id().to_owned();
    if !args.json {
        eprintln!("operation {op}: {}", cell.directive);
    }
    let outcome = match follow(handle, args.json).await {
        Ok(outcome) => outcome,
        Err(e) => return report_exec_error(e),
    };
    let _ = std::fs::remove_file(&index_path);
    finish(args, &index, outcome)
}

/// Prints events until the outcome; Ctrl-C cancels.
async fn follow(
    mut handle: pragma_executor_local::Handle<DirState>,
    json: bool,
) -> Result<Outcome<DirState>, ExecError> {
    let mut cancelled = false;
    loop {
        tokio::select! {
            event = handle.next_event() => match event {
                Some(event) => print_event(&event, json),
                None => break,
            },
            _ = tokio::signal::ctrl_c(), if !cancelled => {
                cancelled = true;
                if !json {
                    eprintln!("cancelling: workers stop, the last checkpoint stays; run again to resume");
                }
                handle.cancel();
            }
        }
    }
    handle.wait().await
}

fn print_event(event: &Event, json: bool) {
    if json {
        // The final line is the command's own summary.
        if !matches!(event, Event::Finished { .. }) {
            let mut out = std::io::stdout().lock();
            let _ = serde_json::to_writer(&mut out, event);
            let _ = writeln!(out);
        }
        return;
    }
    let line = match event {
        Event::Queued { reason, .. } => format!("queued: {reason}"),
        Event::Resumed {
            iterations_done, ..
        } => format!("resumed: {iterations_done} iterations already done"),
        Event::IterationFinished {
            iteration,
            score,
            invalid,
            ..
        } => match (score, invalid) {
            (Some(score), _) => format!("iteration {iteration} finished: score {score}"),
            (None, Some(reason)) => {
                format!("iteration {iteration} finished: invalid score: {reason}")
            }
            (None, None) => format!("iteration {iteration} finished"),
        },
        Event::IterationFailed {
            iteration, error, ..
        } => format!("iteration {iteration} failed: {error}"),
        Event::Retrying {
            iteration, attempt, ..
        } => format!("iteration {iteration}: attempt {attempt}"),
        Event::CheckpointCommitted {
            iterations_done,
            score: Some(score),
            ..
        } => {
            format!("checkpoint after {iterations_done} iterations: score {score}")
        }
        Event::WorkerLost { iteration, .. } => {
            format!("worker lost; iteration {iteration:?} runs again")
        }
        Event::Interrupted {
            iteration, message, ..
        } => format!("iteration {iteration} asked for input: {message}"),
        _ => return,
    };
    eprintln!("{line}");
}

/// Applies the result, prints the summary, and gives the exit code.
fn finish(args: &RunArgs, index: &RunIndex, outcome: Outcome<DirState>) -> u8 {
    let mut conflicts: Vec<String> = Vec::new();
    let mut code = match &outcome.status {
        FinalStatus::Succeeded => exit::OK,
        FinalStatus::Failed { .. } => exit::FAILED,
        FinalStatus::Cancelled => exit::CANCELLED,
        FinalStatus::Interrupted { .. } => exit::INTERRUPTED,
    };
    if let (FinalStatus::Succeeded, Some(best)) = (&outcome.status, &outcome.best) {
        match apply(
            &args.state,
            best.state.path(),
            &index.submitted,
            args.on_conflict,
        ) {
            Ok(left) => {
                if !left.is_empty() {
                    code = exit::CONFLICTS;
                }
                conflicts = left;
            }
            Err(e) => {
                eprintln!(
                    "error: cannot apply the result to `{}`: {e}",
                    args.state.display()
                );
                code = exit::FAILED;
            }
        }
    }
    let best = outcome
        .best
        .as_ref()
        .map(|b| serde_json::json!({ "iteration": b.iteration, "score": b.score }));
    let failed: Vec<_> = outcome
        .failed_iterations
        .iter()
        .map(|(i, e)| serde_json::json!({ "iteration": i, "error": e }))
        .collect();
    if args.json {
        let summary = serde_json::json!({
            "event": "finished",
            "op": outcome.op,
            "status": outcome.status.name(),
            "reason": match &outcome.status {
                FinalStatus::Failed { reason } => Some(reason.clone()),
                FinalStatus::Interrupted { message, iteration } => Some(format!("iteration {iteration}: {message}")),
                _ => None,
            },
            "best": best,
            "iterations_run": outcome.usage.iterations_run,
            "failed_iterations": failed,
            "conflicts": conflicts,
            "usage": outcome.usage,
        });
        println!("{summary}");
    } else {
        match &outcome.status {
            FinalStatus::Succeeded => match &outcome.best {
                Some(b) => println!(
                    "succeeded: best iteration {}{}",
                    b.iteration,
                    b.score.map(|s| format!(", score {s}")).unwrap_or_default()
                ),
                None => println!("succeeded"),
            },
            FinalStatus::Failed { reason } => println!("failed: {reason}"),
            FinalStatus::Cancelled => println!("cancelled: nothing applied; run again to resume"),
            FinalStatus::Interrupted { iteration, message } => {
                println!(
                    "interrupted: iteration {iteration} asked for interactive input ({message}); nothing applied"
                )
            }
        }
        for (iteration, error) in &outcome.failed_iterations {
            println!("  iteration {iteration} failed: {error}");
        }
        let usage = outcome.usage;
        println!(
            "  {} iterations run, {} lost to preemption, {:.1} worker-seconds, {} bytes checkpointed",
            usage.iterations_run, usage.work_lost, usage.worker_seconds, usage.bytes_checkpointed
        );
        if !conflicts.is_empty() {
            println!(
                "conflicts: changed both by the run and in `{}` meanwhile, not applied: {}",
                args.state.display(),
                conflicts.join(", ")
            );
            println!(
                "  rerun with --on-conflict take-background or --on-conflict keep-live to settle them"
            );
        }
    }
    code
}

/// Applies the result's changes to the live directory; returns the
/// conflicts left unapplied.
fn apply(
    live: &Path,
    result: &Path,
    submitted: &BTreeMap<String, (u64, u32)>,
    on_conflict: Option<OnConflict>,
) -> std::io::Result<Vec<String>> {
    let comparison = compare(submitted, &digests(live)?, &digests(result)?);
    let rule = match on_conflict {
        Some(OnConflict::TakeBackground) => Rule::TakeBackground,
        Some(OnConflict::KeepLive) => Rule::KeepLive,
        None => Rule::Fail,
    };
    let (changes, left) = match comparison.resolve(&BTreeMap::new(), rule) {
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
fn index_path(store: &Path, cell: &str, state: &Path) -> PathBuf {
    let state = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_owned());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(cell.as_bytes());
    hasher.update(state.to_string_lossy().as_bytes());
    store
        .join("runs")
        .join(format!("{:08x}.json", hasher.finalize()))
}

fn read_index(path: &Path) -> Option<RunIndex> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_index(path: &Path, index: &RunIndex) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(
        &temporary,
        serde_json::to_vec(index).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(temporary, path)
}
