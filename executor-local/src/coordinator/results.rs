//! A job's result: restored first if it ran elsewhere, then told to the
//! scheduler as a finished, failed or lost iteration, or an interruption.
//! A finished parallel iteration is a candidate: scored, maybe the new
//! best, and waiting for the group commit that records it.

use std::sync::Arc;

use pragma_checkpoint::Store;
use pragma_scheduler::{Event as SchedulerEvent, OpId, WorkerId};
use pragma_selector::Evaluation;

use super::{Coordinator, Msg};
use crate::job::JobResult;
use crate::op::{Judged, Op};
use crate::persist::restore_remote;
use crate::report::Event;
use pragma_contract::{Host, RunError};
use pragma_contract::{JobOutcome, LocalOutput, RemoteOutput};

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// `worker`'s job for `id` is done: `output` says how.
    pub(super) fn job_done(&mut self, id: OpId, worker: WorkerId, output: JobOutcome) {
        let output = match output {
            JobOutcome::Remote(remote) => return self.restore_elsewhere(id, worker, remote),
            JobOutcome::Ran(local) => local.take::<JobResult<H::State>>(),
            _ => None,
        };
        let Some(running) = self.running.remove(&worker) else {
            return; // stopped meanwhile
        };
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        op.attempts.end(running.iteration);
        let Some(output) = output else {
            return self.worker_lost(id, worker, running.iteration);
        };
        if let Err(RunError::Lost(_)) = &output.result {
            // A preemption: the scheduler counts the run as lost work.
            if let Some(op) = self.ops.get_mut(&id) {
                op.usage.add_job(output.seconds, output.lost_runs);
            }
            return self.worker_lost(id, worker, running.iteration);
        }
        let Some(event) = self.take_result(id, worker, output) else {
            return;
        };
        // The common path: no allocation for the scheduler's actions.
        let mut actions = std::mem::take(&mut self.spare_actions);
        self.scheduler.handle_into(event, &mut actions);
        self.act(actions);
        self.stop_if_due(id);
    }

    /// A job that ran elsewhere left its state in the store: it is
    /// restored first (the worker stays busy meanwhile), then comes back
    /// as a job that ran here.
    fn restore_elsewhere(&mut self, id: OpId, worker: WorkerId, remote: RemoteOutput) {
        let (Some(running), Some(op)) = (self.running.get(&worker), self.ops.get(&id)) else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        let (iteration, name) = (running.iteration, op.name.clone());
        self.tasks.spawn(async move {
            let output = restore_remote(&shared, &name, iteration, remote).await;
            let _ = control.send(Msg::JobDone {
                op: id,
                worker,
                output: JobOutcome::Ran(LocalOutput::new(output)),
            });
        });
    }

    /// The worker running `iteration` was lost: the scheduler runs it
    /// again elsewhere.
    fn worker_lost(&mut self, id: OpId, worker: WorkerId, iteration: u64) {
        if let Some(op) = self.ops.get_mut(&id) {
            op.runs_since_checkpoint = 0;
            op.emit(|op| Event::WorkerLost {
                op,
                iteration: Some(iteration),
            });
        }
        self.worker_states.remove(&worker);
        self.tell(SchedulerEvent::WorkerLost(worker));
    }

    /// Takes a job's result in; returns what to tell the scheduler (none:
    /// the job was cancelled, or its worker is held back).
    fn take_result(
        &mut self,
        id: OpId,
        worker: WorkerId,
        output: JobResult<H::State>,
    ) -> Option<SchedulerEvent> {
        let op = self.ops.get_mut(&id)?;
        let JobResult {
            iteration,
            result,
            evaluation,
            seconds,
            lost_runs,
        } = output;
        op.usage.add_job(seconds, lost_runs);
        let event = match result {
            Err(RunError::Cancelled | RunError::Lost(_)) => return None,
            Err(RunError::InteractiveInput(message)) => {
                op.interrupt(iteration, message);
                SchedulerEvent::Cancel(id)
            }
            Err(RunError::StorageFull(message)) => {
                // As a full store: stop at the last checkpoint, resumable.
                if op.ending.stopped.is_none() {
                    op.ending.stopped = Some(format!("iteration {iteration}: {message}"));
                }
                SchedulerEvent::Cancel(id)
            }
            Err(RunError::Failed(error)) => {
                // A repeat rewinds to its last checkpoint: the scheduler
                // counts what is lost.
                op.runs_since_checkpoint = 0;
                op.iteration_failed(iteration, error);
                SchedulerEvent::IterationFailed(worker)
            }
            Ok(state) if op.is_repeat() => {
                op.emit(|op| Event::IterationFinished {
                    op,
                    iteration,
                    score: None,
                    invalid: None,
                });
                self.worker_states.insert(worker, state);
                self.record_usage(id, iteration);
                SchedulerEvent::IterationFinished(worker)
            }
            Ok(state) => {
                // Parallel or async: a candidate, for the next group
                // commit to record; its worker is held back while too many
                // wait for one.
                op.candidate(&self.shared.host, worker, iteration, evaluation, state);
                let hold = op.group.is_full(self.shared.config.max_unrecorded);
                if hold {
                    op.group.held.push(worker);
                }
                self.commit_batch(id);
                if hold {
                    return None;
                }
                SchedulerEvent::IterationFinished(worker)
            }
        };
        Some(event)
    }
}

impl<St> Op<St> {
    /// The body of `iteration` asked for interactive input: the operation
    /// ends as interrupted.
    fn interrupt(&mut self, iteration: u64, message: String) {
        self.emit(|op| Event::Interrupted {
            op,
            iteration,
            message: message.clone(),
        });
        self.ending.interrupted = Some((iteration, message));
    }

    /// The body of `iteration` failed; it may be retried.
    fn iteration_failed(&mut self, iteration: u64, error: String) {
        self.emit(|op| Event::IterationFailed {
            op,
            iteration,
            error: error.clone(),
        });
        self.progress.last_error.insert(iteration, error);
    }

    /// A parallel iteration finished on `worker` with `state`: scored,
    /// kept if it is the new best (without the iteration variable), and
    /// left for the next group commit to record.
    fn candidate(
        &mut self,
        host: &impl Host<State = St>,
        worker: WorkerId,
        iteration: u64,
        evaluation: Option<Evaluation>,
        mut state: St,
    ) {
        // Without a selector (or a score) every candidate is the newest best.
        let Judged {
            score,
            invalid,
            new_best,
        } = evaluation
            .and_then(|evaluation| self.selection.judge(iteration, evaluation))
            .unwrap_or(Judged {
                score: None,
                invalid: None,
                new_best: true,
            });
        self.selection
            .push_candidate(iteration, score, invalid.clone());
        self.stop.candidate(iteration, score);
        self.emit(|op| Event::IterationFinished {
            op,
            iteration,
            score,
            invalid,
        });
        if new_best {
            host.remove_iteration_var(&mut state, self.iteration_var());
            self.selection.set_best(iteration, score, state);
            self.selection.set_unwritten();
        }
        // Recorded durably by the next group commit; until then a crash
        // loses it like an unsaved repeat iteration.
        self.group.pending.push((worker, iteration));
    }
}
