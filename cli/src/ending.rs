//! How the command tells a run's id and its end: the announcement, the
//! summary (text or the JSON line), and the exit code it stands for.

use pragma_executor_local::FinalStatus;
use pragma_session::{Ending, Summary};

use crate::args::RunArgs;
use crate::failure::exit;
use crate::location::Location;

/// Tells the operation's id once it is submitted: to `pragma submit`
/// (which reads the line and returns), or to the person at the terminal.
pub(crate) fn announce(args: &RunArgs, op: &str, directive: &dyn std::fmt::Display) {
    if args.detached {
        outln!("{op}");
    } else if !args.json {
        errln!("operation {op}: {directive}");
    }
}

/// The exit code a summary stands for.
pub(crate) fn exit_code(summary: &Summary) -> u8 {
    match summary.ending() {
        Ending::Applied => exit::OK,
        Ending::ConflictsLeft => exit::CONFLICTS,
        Ending::Cancelled => exit::CANCELLED,
        Ending::Suspended => exit::SUSPENDED,
        Ending::Interrupted => exit::INTERRUPTED,
        _ => exit::FAILED,
    }
}

/// Prints a summary: the JSON line, or text for a person.
pub(crate) fn print_summary(summary: &Summary, location: &Location, json: bool) {
    if json {
        outln!("{}", serde_json::to_string(summary).unwrap_or_default());
    } else {
        outln!("{}", status_line(summary, location));
        print_details(summary);
    }
    // Errors go to standard error in every mode.
    if let Some(error) = &summary.apply_error {
        errln!("error: {error}");
    }
    if !json && !summary.conflicts.is_empty() {
        print_conflicts(
            &summary.conflicts,
            "the state directory",
            &summary.op,
            location,
        );
    }
}

/// The first line of a summary for a person: how the run ended, and what
/// the user does next.
fn status_line(summary: &Summary, location: &Location) -> String {
    let reason = summary.reason().unwrap_or_default();
    match &summary.status {
        FinalStatus::Succeeded => succeeded_line(summary, location),
        FinalStatus::Failed { .. } => format!("failed: {reason}"),
        FinalStatus::Cancelled => "cancelled: nothing applied; run again to resume".to_owned(),
        FinalStatus::Suspended => {
            "suspended by a preemption notice: what finished is checkpointed, nothing applied; \
             run the same command again to resume"
                .to_owned()
        }
        FinalStatus::Stopped { .. } => format!(
            "stopped, the store is full: {reason}; nothing applied, the last checkpoint stays: make room and run again to resume"
        ),
        FinalStatus::Interrupted { .. } => {
            format!("interrupted: {reason}; the body asked for interactive input, nothing applied")
        }
        other => format!("ended: {}", other.name()),
    }
}

/// The line of a run that succeeded: its best iteration, and whether its
/// result could not be applied (then how to apply it later).
fn succeeded_line(summary: &Summary, location: &Location) -> String {
    let best = match &summary.best {
        Some(best) => format!(
            ": best iteration {}{}",
            best.iteration,
            best.score
                .map(|s| format!(", score {s}"))
                .unwrap_or_default()
        ),
        None => String::new(),
    };
    if summary.apply_error.is_some() {
        format!(
            "succeeded{best}; but the result could not be applied (the error follows): it is kept, \
             and `pragma apply {}{}` applies it once that is fixed",
            summary.op,
            location.store_flag()
        )
    } else {
        format!("succeeded{best}")
    }
}

/// The indented lines under the first: why the run stopped early, the
/// iterations that failed, and what the run used.
fn print_details(summary: &Summary) {
    if let Some(why) = &summary.stopped_early {
        outln!("  stopped early: {why}");
    }
    for failed in &summary.failed_iterations {
        outln!("  iteration {} failed: {}", failed.iteration, failed.error);
    }
    let usage = &summary.usage;
    outln!(
        "  {} iterations run, {} lost to preemption, {:.1} worker-seconds, {} bytes checkpointed",
        usage.iterations_run,
        usage.work_lost,
        usage.worker_seconds,
        usage.bytes_checkpointed
    );
}

/// Names the conflicts left unapplied (changed both by the run and in
/// `state` meanwhile) and the commands that settle them.
pub(crate) fn print_conflicts(conflicts: &[String], state: &str, op: &str, location: &Location) {
    let names: Vec<String> = conflicts
        .iter()
        .map(|name| crate::live::shown_var(name))
        .collect();
    outln!(
        "conflicts: changed both by the run and in {state} meanwhile, not applied: {}",
        names.join(", ")
    );
    let store = location.store_flag();
    outln!(
        "  settle them with `pragma apply {op}{store} --take background` or `pragma apply {op}{store} --keep-live`"
    );
}
