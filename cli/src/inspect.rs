//! `pragma status`, `pragma report` and `pragma logs`: what the store knows
//! about operations.

use std::path::{Path, PathBuf};

use clap::Args;
use pragma_executor_local::{CandidateScore, Config, FinalStatus, OperationSummary};

use pragma_session::{RunState, StoreSpec, check_op_id};

use crate::failure::{Exit, Failure, exit};
use crate::location::{Location, ShellSession};

/// Arguments of `pragma status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// One operation (default: all of them).
    op: Option<String>,
    /// The store the operations are in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
    /// Print one JSON object per operation.
    #[arg(long)]
    json: bool,
}

/// Arguments of `pragma report`.
#[derive(Args)]
pub(crate) struct ReportArgs {
    /// The operation.
    op: String,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
    /// Also write an SVG chart of the candidates and scores to this file
    /// (`-`: standard output, instead of the table).
    #[arg(long)]
    svg: Option<PathBuf>,
}

/// Arguments of `pragma logs`.
#[derive(Args)]
pub(crate) struct LogsArgs {
    /// The operation.
    op: String,
    /// Only this iteration.
    #[arg(long)]
    iteration: Option<u64>,
    /// The store the operation is in.
    #[arg(long, default_value = ".pragma")]
    store: StoreSpec,
}

fn with_session<T>(
    store: &StoreSpec,
    work: impl AsyncFnOnce(&ShellSession) -> Result<T, String>,
) -> Result<T, Failure> {
    let runtime = tokio::runtime::Runtime::new()
        .map_err(|e| Failure::failed(format!("cannot start the runtime: {e}")))?;
    runtime
        .block_on(async {
            let location = Location::existing(store)?;
            let executor = location.executor(location.host()?, Config::default().workers(1));
            work(&location.session(executor)).await
        })
        .map_err(Failure::usage)
}

/// Checks an operation id given on the command line.
fn check_op(op: &str) -> Result<(), String> {
    check_op_id(op).map_err(|e| format!("{e}, and `pragma status` lists them"))
}

fn status_name(status: &Option<FinalStatus>) -> String {
    match status {
        None => "unfinished".to_owned(),
        Some(status) => status.name().to_owned(),
    }
}

/// What the command knows beyond the store: whether a process runs the
/// operation now, and whether its result waits to be applied.
fn run_state(session: &ShellSession, summary: &OperationSummary) -> String {
    match session.run_state(summary) {
        RunState::Running(runner) => format!("running ({})", session.describe(&runner)),
        RunState::Stopped => "stopped, resumable".to_owned(),
        RunState::Resumable => "resumable".to_owned(),
        RunState::ResultNotApplied => match session.records().outcome(&summary.op) {
            Some(outcome) if !outcome.conflicts.is_empty() => format!(
                "result not applied (conflicts: {})",
                outcome
                    .conflicts
                    .iter()
                    .map(|c| crate::live::shown_var(c))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Some(outcome) if outcome.apply_error.is_some() => {
                "result not applied (applying it failed; `pragma apply` tries again)".to_owned()
            }
            _ => "result not applied".to_owned(),
        },
        _ => String::new(),
    }
}

fn best_text(summary: &OperationSummary) -> String {
    match &summary.best {
        Some(best) => match best.score {
            Some(score) => format!("iteration {} ({score})", best.iteration),
            None => format!("iteration {}", best.iteration),
        },
        None => "-".to_owned(),
    }
}

/// `pragma status`: lists operations and their states.
pub(crate) fn status(args: &StatusArgs) -> Exit {
    let summaries = with_session(&args.store, async |session| {
        let executor = session.executor();
        let ops = match &args.op {
            Some(op) => {
                check_op(op)?;
                vec![op.clone()]
            }
            None => executor.operations().await.map_err(|e| e.to_string())?,
        };
        let mut summaries = Vec::new();
        for op in ops {
            let summary = executor.summary(&op).await.map_err(|e| e.to_string())?;
            let state = run_state(session, &summary);
            summaries.push((summary, state));
        }
        Ok(summaries)
    })?;
    for (summary, state) in &summaries {
        if args.json {
            let mut value = serde_json::to_value(summary).unwrap_or_default();
            value["run"] = serde_json::json!(state);
            outln!("{value}");
        } else {
            outln!(
                "{}  {:<11} {}/{} iterations  best {}  {}{}{}",
                summary.op,
                status_name(&summary.status),
                summary.done,
                summary.iterations,
                best_text(summary),
                summary.directive,
                if state.is_empty() {
                    String::new()
                } else {
                    format!("  [{state}]")
                },
                summary
                    .stopped_early
                    .as_ref()
                    .map(|why| format!("  [stopped early: {why}]"))
                    .unwrap_or_default()
            );
        }
    }
    Ok(exit::OK)
}

/// `pragma report`: the candidates and their scores, and a chart. The
/// table is printed as the candidates are read from the store, so that an
/// operation of millions of iterations costs no memory for it; only a
/// chart holds them all.
pub(crate) fn report(args: &ReportArgs) -> Exit {
    let svg_to_stdout = args.svg.as_deref() == Some(std::path::Path::new("-"));
    let charted = with_session(&args.store, async |session| {
        check_op(&args.op)?;
        let executor = session.executor();
        let summary = executor
            .summary(&args.op)
            .await
            .map_err(|e| e.to_string())?;
        let mut candidates = executor
            .candidates(&args.op)
            .await
            .map_err(|e| e.to_string())?;
        if !svg_to_stdout {
            print_heading(&summary);
        }
        let mut kept = Vec::new();
        while let Some(candidate) = candidates.next().await {
            let candidate = candidate.map_err(|e| e.to_string())?;
            if !svg_to_stdout {
                print_candidate(&summary, &candidate);
            }
            if args.svg.is_some() {
                kept.push(candidate);
            }
        }
        if !svg_to_stdout {
            for (iteration, error) in &summary.failed_iterations {
                outln!("{iteration:>26}  failed: {error}");
            }
            if let Some(why) = &summary.stopped_early {
                outln!("stopped early: {why}");
            }
        }
        Ok((summary, kept))
    })?;
    if let Some(path) = &args.svg {
        let (summary, candidates) = charted;
        let svg = pragma_chart::svg(&summary, &candidates).map_err(Failure::failed)?;
        if path.as_os_str() == "-" {
            crate::output::out(format_args!("{svg}"));
        } else {
            std::fs::write(path, svg)
                .map_err(|e| Failure::failed(format!("cannot write `{}`: {e}", path.display())))?;
        }
    }
    Ok(exit::OK)
}

/// The head of an operation's table of candidates and scores.
fn print_heading(summary: &OperationSummary) {
    outln!(
        "{}  {}  {}",
        summary.op,
        status_name(&summary.status),
        summary.directive
    );
    let what = if summary.candidates_are_checkpoints {
        "checkpoint after iteration"
    } else {
        "iteration"
    };
    outln!("{what:>26}  score");
}

/// One row of the table: a candidate and its score.
fn print_candidate(summary: &OperationSummary, candidate: &CandidateScore) {
    let best = summary
        .best
        .as_ref()
        .is_some_and(|b| b.iteration == candidate.iteration);
    let score = match (candidate.score, &candidate.invalid) {
        (Some(score), _) => score.to_string(),
        (None, Some(reason)) => format!("invalid: {reason}"),
        (None, None) => "-".to_owned(),
    };
    outln!(
        "{:>26}  {score}{}",
        candidate.iteration,
        if best { "  <- best" } else { "" }
    );
}

/// `pragma logs`: the standard output and error of iterations.
pub(crate) fn logs(args: &LogsArgs) -> Exit {
    check_op(&args.op).map_err(Failure::usage)?;
    let location = Location::existing(&args.store).map_err(Failure::usage)?;
    if let Some(iteration) = args.iteration {
        check_iteration(args, iteration)?;
    }
    let dir = location.logs().join(&args.op);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).collect(),
        // Only output that was printed is kept: an operation whose bodies
        // printed nothing has no logs, and that is no error.
        Err(_) if location.records().op_dir(&args.op).is_dir() => {
            outln!(
                "operation {}: its iterations printed nothing so far (no standard output or error)",
                args.op
            );
            return Ok(exit::OK);
        }
        Err(_) => {
            return Err(Failure::usage(format!(
                "the store `{}` has no operation `{}` (`pragma status` lists them)",
                args.store, args.op
            )));
        }
    };
    files.sort_by_key(|path| log_order(path));
    let mut shown = 0;
    for path in &files {
        if args.iteration.is_some_and(|i| Some(i) != log_order(path).0) {
            continue;
        }
        if show_log(path) {
            shown += 1;
        }
    }
    if shown == 0 {
        errln!("(no output)");
    }
    Ok(exit::OK)
}

/// Refuses an iteration the operation does not have.
fn check_iteration(args: &LogsArgs, iteration: u64) -> Result<(), Failure> {
    let op = args.op.clone();
    let iterations = with_session(&args.store, async |session| {
        Ok(session
            .executor()
            .summary(&op)
            .await
            .map(|s| s.iterations)
            .ok())
    })?;
    match iterations.filter(|n| iteration >= *n) {
        Some(iterations) => Err(Failure::usage(format!(
            "operation {} has iterations 0 to {}: there is no iteration {iteration}",
            args.op,
            iterations.saturating_sub(1)
        ))),
        None => Ok(()),
    }
}

/// Where a log goes among an operation's: its names are
/// `ITERATION-ATTEMPT.out` / `.err`, ordered by the numbers, standard
/// output first.
fn log_order(path: &Path) -> (Option<u64>, Option<u64>, bool) {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_owned();
    let mut numbers = stem
        .split('-')
        .map(|n| n.parse::<u64>().unwrap_or(u64::MAX));
    let stderr = path.extension().is_some_and(|e| e == "err");
    (numbers.next(), numbers.next(), stderr)
}

/// Prints one log under its heading; whether it had anything to show.
fn show_log(path: &Path) -> bool {
    let (iteration, attempt, stderr) = log_order(path);
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    if text.is_empty() {
        return false;
    }
    let stream = if stderr { "stderr" } else { "stdout" };
    outln!(
        "== iteration {} attempt {} {stream}",
        iteration.unwrap_or_default(),
        attempt.unwrap_or_default()
    );
    crate::output::out(format_args!("{text}"));
    if !text.ends_with('\n') {
        outln!();
    }
    true
}
