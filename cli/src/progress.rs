//! How a run shows its progress: a bar in a terminal, plain lines
//! otherwise, nothing but JSON with `--json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pragma_executor_local::{Event, Status};

/// Where progress goes.
pub(crate) enum Progress {
    /// A bar on standard error, with notable events printed above it.
    Bar(ProgressBar),
    /// One line on standard error per event worth a line, and a line of
    /// counts every few seconds while they change.
    Lines(Mutex<LastCounts>),
    /// Nothing (JSON output, or a detached run).
    Quiet,
}

impl Progress {
    /// A bar when standard error is a terminal, lines otherwise; nothing
    /// when `quiet`.
    pub(crate) fn new(quiet: bool) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            return Progress::Lines(Mutex::new(LastCounts {
                shown: Instant::now(),
                done: 0,
            }));
        }
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {bar:20} {pos}/{len} · {msg} · ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// Prints a message without breaking the bar.
    pub(crate) fn say(&self, message: &str) {
        match self {
            Progress::Bar(bar) => bar.println(message),
            Progress::Lines(_) => errln!("{message}"),
            Progress::Quiet => {}
        }
    }

    /// Shows the status now.
    pub(crate) fn update(&self, status: &Status) {
        let progress = status.schedule.progress();
        match self {
            Progress::Bar(bar) => {
                bar.set_length(progress.total);
                bar.set_position(progress.done);
                bar.set_message(status_text(status));
            }
            Progress::Lines(last) => {
                let Ok(mut last) = last.lock() else { return };
                if progress.done != last.done && last.shown.elapsed() >= LINE_PERIOD {
                    errln!(
                        "progress: {}/{} iterations done, {}",
                        progress.done,
                        progress.total,
                        status_text(status)
                    );
                    *last = LastCounts {
                        shown: Instant::now(),
                        done: progress.done,
                    };
                }
            }
            Progress::Quiet => {}
        }
    }

    /// Reports an event: every one as a line, or the notable ones above
    /// the bar.
    pub(crate) fn event(&self, event: &Event, status: &Status) {
        match self {
            Progress::Quiet => {}
            Progress::Lines(_) => {
                if let Some(line) = event_line(event) {
                    errln!("{line}");
                }
            }
            Progress::Bar(bar) => {
                // Per-iteration lines would scroll the bar away; failures
                // and the like are worth keeping on screen.
                let notable = !matches!(
                    event,
                    Event::IterationFinished { .. }
                        | Event::IterationStarted { .. }
                        | Event::CheckpointCommitted { .. }
                        | Event::Started { .. }
                );
                if notable && let Some(line) = event_line(event) {
                    bar.println(line);
                }
                self.update(status);
            }
        }
    }

    /// Removes the bar before the summary.
    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// How often, at most, plain progress prints the counts.
const LINE_PERIOD: Duration = Duration::from_secs(5);

/// The counts plain progress printed last, and when.
pub(crate) struct LastCounts {
    shown: Instant,
    done: u64,
}

/// `2 in flight · best 0.93 (iteration 7)`.
fn status_text(status: &Status) -> String {
    let in_flight = status.schedule.progress().in_flight;
    match &status.best {
        Some(best) => match best.score {
            Some(score) => format!(
                "{in_flight} in flight · best {score} (iteration {})",
                best.iteration
            ),
            None => format!("{in_flight} in flight · iteration {}", best.iteration),
        },
        None => format!("{in_flight} in flight · no best yet"),
    }
}

/// The line an event is worth, if any.
pub(crate) fn event_line(event: &Event) -> Option<String> {
    Some(match event {
        Event::Queued { reason, .. } => format!("queued: {reason}"),
        Event::Resumed {
            iterations_done, ..
        } => format!("resumed: {iterations_done} iterations already done"),
        Event::CheckpointSkipped {
            generation,
            problem,
            ..
        } => format!(
            "warning: checkpoint {generation} is damaged and was skipped ({problem}); \
             resuming from an earlier one, so more work runs again"
        ),
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
        Event::StoppedEarly { reason, .. } => format!("stopping early: {reason}"),
        Event::Suspending { grace_seconds, .. } => {
            format!("suspending: nothing new starts; what runs has {grace_seconds} s to finish")
        }
        Event::Retrying {
            iteration, attempt, ..
        } => format!("iteration {iteration}: attempt {attempt}"),
        Event::CheckpointCommitted {
            iterations_done,
            score: Some(score),
            ..
        } => format!("checkpoint after {iterations_done} iterations: score {score}"),
        Event::WorkerLost { iteration, .. } => match iteration {
            Some(iteration) => format!("worker lost; iteration {iteration} runs again"),
            None => "worker lost".to_owned(),
        },
        Event::Interrupted {
            iteration, message, ..
        } => format!("iteration {iteration} asked for input: {message}"),
        _ => return None,
    })
}
