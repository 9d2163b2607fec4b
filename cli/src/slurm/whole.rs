//! A repeat operation that runs as one requeueable SLURM job
//! ([`SlurmBackend::submit_whole`]): `pragma __slurm-run` on a node, which
//! resumes from its last checkpoint each time the job starts.
//!
//! The job prints [`JOB_START`] first at each start, then the operation's
//! events as JSON Lines and, at its end, the host's summary line, all into
//! its output file (`run.out`, appended across starts). [`JobLines`] reads
//! that output and counts the runs that a start cut short after its last
//! checkpoint (lost work); [`follow`] tails it until the job leaves the
//! queue, cancelling the job on Ctrl-C or SIGTERM.
//!
//! [`SlurmBackend::submit_whole`]: pragma_executor_slurm::SlurmBackend::submit_whole

use std::path::Path;
use std::time::Duration;

use pragma_executor_local::Event;
use serde::de::DeserializeOwned;

use pragma_executor_slurm::{cancel_job_in_runtime, in_queue};

/// The line a whole job prints each time it starts.
pub(super) const JOB_START: &str = r#"{"job_start":true}"#;

/// What the output of a whole job says, read line by line: its events,
/// its last summary (of the host's type `T`), and the work lost to
/// requeues.
#[derive(Debug)]
pub(super) struct JobLines<T> {
    /// The last summary.
    finished: Option<T>,
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

impl<T> Default for JobLines<T> {
    fn default() -> Self {
        JobLines {
            finished: None,
            lost: 0,
            uncounted: 0,
            done: 0,
            started: Vec::new(),
            ended: false,
        }
    }
}

/// A whole job's last summary, with the runs its requeues cut short.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Finished<T> {
    /// The summary the job printed last.
    pub(super) summary: T,
    /// Runs cut short after a start's last checkpoint: work lost.
    pub(super) lost_runs: u64,
    /// Those of them that no record counted (their start was killed
    /// outright): runs to add to the usage.
    pub(super) uncounted_runs: u64,
}

impl<T: DeserializeOwned> JobLines<T> {
    /// Reads one line of the output; the event it holds, if it is one.
    pub(super) fn read(&mut self, line: &str) -> Option<Event> {
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
            return None;
        }
        let Ok(event) = serde_json::from_str::<Event>(line) else {
            if let Ok(summary) = serde_json::from_str::<T>(line) {
                self.finished = Some(summary);
                self.ended = true;
            }
            return None;
        };
        match &event {
            Event::IterationStarted { iteration, .. } => self.started.push(*iteration),
            Event::Resumed {
                iterations_done, ..
            }
            | Event::CheckpointCommitted {
                iterations_done, ..
            } => self.done = self.done.max(*iterations_done),
            _ => {}
        }
        Some(event)
    }

    /// The last summary, with the runs lost to requeues.
    pub(super) fn finished(self) -> Option<Finished<T>> {
        Some(Finished {
            summary: self.finished?,
            lost_runs: self.lost,
            uncounted_runs: self.uncounted,
        })
    }
}

/// Follows whole job `job` until it leaves the queue, reading its output
/// file `output` as it grows: each whole line goes to `line` (and through
/// `lines`). Ctrl-C or SIGTERM cancels the job, which stops at its last
/// checkpoint; `on_cancel` is told once.
pub(super) async fn follow<T: DeserializeOwned>(
    job: &str,
    output: &Path,
    lines: &mut JobLines<T>,
    mut line: impl FnMut(&str, Option<&Event>),
    on_cancel: impl FnOnce(),
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut on_cancel = Some(on_cancel);
    let mut offset = 0usize;
    loop {
        // After the job leaves the queue, one more read: its last lines may
        // have landed meanwhile.
        let left = !in_queue(job).await;
        let text = tokio::fs::read_to_string(output).await.unwrap_or_default();
        let complete = if left {
            text.len()
        } else {
            text.get(offset..)
                .and_then(|rest| rest.rfind('\n'))
                .map_or(offset, |i| offset + i + 1)
        };
        for text in text.get(offset..complete).unwrap_or_default().lines() {
            let event = lines.read(text);
            line(text, event.as_ref());
        }
        offset = complete;
        if left {
            return;
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
            _ = tokio::signal::ctrl_c(), if on_cancel.is_some() => {
                if let Some(told) = on_cancel.take() { told() }
                let _ = cancel_job_in_runtime(job).await;
            }
            () = stop, if on_cancel.is_some() => {
                if let Some(told) = on_cancel.take() { told() }
                let _ = cancel_job_in_runtime(job).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(line: &str) -> String {
        line.replace('\'', "\"")
    }

    /// A host's summary line, as far as these tests need it.
    #[derive(Debug, serde::Deserialize)]
    struct Summary {
        status: String,
        usage: serde_json::Value,
    }

    #[test]
    fn runs_after_the_last_checkpoint_of_a_start_cut_short_are_lost() {
        let mut lines = JobLines::<Summary>::default();
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
            lines.read(line);
        }
        let finished = lines.finished().unwrap();
        assert_eq!(finished.summary.status, "succeeded");
        assert_eq!(finished.summary.usage["iterations_run"], 4);
        assert_eq!((finished.lost_runs, finished.uncounted_runs), (3, 3));
    }

    #[test]
    fn a_cancelled_start_loses_its_runs_after_the_checkpoint_and_counted_them() {
        let mut lines = JobLines::<Summary>::default();
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
            lines.read(&line);
        }
        let finished = lines.finished().unwrap();
        assert_eq!(finished.summary.status, "succeeded");
        assert_eq!((finished.lost_runs, finished.uncounted_runs), (1, 0));
    }
}
