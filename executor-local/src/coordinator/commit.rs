//! Commits while an operation runs: a repeat's checkpoints (the state
//! scored, then committed with its record) and a parallel operation's
//! group commits (every iteration that finished since the last one, in one
//! record); and what follows when they are made or fail.

use std::sync::Arc;

use pragma_checkpoint::{Lease, Store};
use pragma_scheduler::{Event as SchedulerEvent, OpId, WorkerId};
use pragma_selector::Evaluation;

use super::Coordinator;
use super::msg::{CommitKind, Msg};
use crate::op::{Batch, Op, Written};
use crate::persist::{CandidatesPart, CommitFailure, commit_record, commit_state, retain};
use crate::report::Event;
use pragma_contract::Host;

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// Records finished parallel iterations (and a new best state) in one
    /// commit, unless a commit is already on its way or this one must wait
    /// for its turn.
    pub(super) fn commit_batch(&mut self, id: OpId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let ending = op.ending.is_ending();
        if !op.group.may_commit(ending) {
            return;
        }
        op.refresh_usage(
            self.scheduler.status(id).map(|s| s.progress()),
            &*self.shared.backend,
        );
        // At most one group commit per interval, unless the operation ends.
        if let Some(wait) = op
            .group
            .hold_back(self.shared.config.record_interval, ending)
        {
            let control = self.control.clone();
            self.tasks.spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = control.send(Msg::Flush(id));
            });
            return;
        }
        let workers = op.group.begin();
        let batch = op.batch(&workers);
        let lease = op.lease.clone();
        self.spawn_batch(id, lease, workers, batch);
    }

    /// Writes `batch`, recording `workers`' iterations, and reports back.
    fn spawn_batch(
        &mut self,
        id: OpId,
        lease: Lease,
        workers: Vec<(WorkerId, u64)>,
        batch: Batch<H::State>,
    ) {
        let Batch {
            record,
            candidates,
            written,
            best_state,
            best_iteration,
            keep,
            clean_up,
        } = batch;
        let full = written.full;
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        let turn = self.ops.get(&id).map(|op| Arc::clone(&op.commit_turn));
        self.tasks.spawn(async move {
            let mut turn = match &turn {
                Some(turn) => Some(turn.lock().await),
                None => None,
            };
            let result = match &best_state {
                Some(state) => {
                    commit_state(&shared, &lease, &record, "state", state, &candidates).await
                }
                None => commit_record(&shared, &lease, &record, &candidates).await,
            };
            if let (true, Ok((generation, _)), Some(turn)) = (full, &result, &mut turn) {
                **turn = *generation;
            }
            let result = if clean_up {
                retain(&shared, &lease, &record, keep, result).await
            } else {
                result.map_err(CommitFailure::from)
            };
            let _ = control.send(Msg::Committed {
                op: id,
                commit: CommitKind::Batch {
                    workers,
                    best_iteration,
                    written,
                },
                result,
            });
        });
    }

    /// A repeat's iteration `iteration` finished between checkpoints: its
    /// usage goes to the store at most once per record interval (a record
    /// without a state), so that after a crash the runs since the last
    /// checkpoint are counted, as runs and as lost work. What can still go
    /// uncounted: the runs of one record interval.
    pub(super) fn record_usage(&mut self, id: OpId, iteration: u64) {
        let interval = self.shared.config.record_interval;
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        // A checkpoint that follows records it anyway.
        if op.result_saved(iteration) || op.last_record.elapsed() < interval {
            return;
        }
        op.last_record = std::time::Instant::now();
        op.refresh_usage(
            self.scheduler.status(id).map(|s| s.progress()),
            &*self.shared.backend,
        );
        let record = op.usage_record();
        // The submission and the chain stay; earlier usage records go.
        let keep = op.chain.keep(false);
        let (lease, turn) = (op.lease.clone(), Arc::clone(&op.commit_turn));
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let turn = turn.lock().await;
            if record.base != Some(*turn) {
                // A checkpoint went first: it holds more than this.
                return;
            }
            let result = commit_record(&shared, &lease, &record, &CandidatesPart::default()).await;
            let result = retain(&shared, &lease, &record, keep, result).await;
            let _ = control.send(Msg::Committed {
                op: id,
                commit: CommitKind::Usage,
                result,
            });
        });
    }

    /// A repeat's checkpoint is due: `worker`'s state is scored first
    /// (away from the coordinator), then committed.
    pub(super) fn checkpoint(&mut self, id: OpId, worker: WorkerId, iterations_done: u64) {
        let Some(op) = self.ops.get(&id) else { return };
        let Some(state) = self.worker_states.get(&worker).cloned() else {
            return;
        };
        let expr = op.expr.clone();
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        self.tasks.spawn(async move {
            let evaluation = match expr {
                Some(expr) => pragma_contract::evaluate(&shared.host, &expr, &state).await,
                None => Evaluation::Score(0.0),
            };
            let _ = control.send(Msg::Evaluated {
                op: id,
                worker,
                iterations_done,
                evaluation,
                state,
            });
        });
    }

    /// A repeat's checkpoint state was scored: it is a candidate, maybe
    /// the new best, and is committed with its record.
    pub(super) fn evaluated(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iterations_done: u64,
        evaluation: Evaluation,
        mut state: H::State,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if !self.worker_states.contains_key(&worker) {
            return; // the worker was lost or stopped meanwhile
        }
        let iteration = iterations_done - 1;
        let (score, invalid) = match op.selection.judge(iteration, evaluation) {
            Some(judged) => {
                op.stop
                    .checkpoint_judged(iteration, judged.score, judged.new_best);
                if judged.new_best {
                    let mut best = state.clone();
                    self.shared
                        .host
                        .remove_iteration_var(&mut best, op.iteration_var());
                    op.selection.set_best(iteration, judged.score, best);
                }
                (judged.score, judged.invalid)
            }
            None => (None, None),
        };
        op.selection.push_candidate(iteration, score, invalid);
        op.refresh_usage(
            self.scheduler.status(id).map(|s| s.progress()),
            &*self.shared.backend,
        );
        let (mut record, candidates, written) = op.full_record(None);
        record.iterations_done = iterations_done;
        // Its runs are the checkpoint's now.
        record.pending_runs = 0;
        op.group.committing = true;
        let turn = Arc::clone(&op.commit_turn);
        let keep = vec![op.chain.submission_generation];
        let lease = op.lease.clone();
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        // The checkpoint holds the state as the next iteration continues
        // from it: the iteration variable stays.
        self.shared
            .host
            .set_iteration_var(&mut state, op.iteration_var(), iteration);
        self.tasks.spawn(async move {
            let mut turn = turn.lock().await;
            let result = commit_state(&shared, &lease, &record, "state", &state, &candidates).await;
            if let Ok((generation, _)) = &result {
                *turn = *generation;
            }
            let result = retain(&shared, &lease, &record, keep, result).await;
            let _ = control.send(Msg::Committed {
                op: id,
                commit: CommitKind::Checkpoint {
                    worker,
                    iterations_done,
                    written,
                },
                result,
            });
        });
    }

    /// A commit of `id` was made, or failed: the scheduler hears of a
    /// checkpoint, a full store stops the operation, and the next commit
    /// (or the end) may go.
    pub(super) fn committed(
        &mut self,
        id: OpId,
        commit: CommitKind,
        result: Result<(u64, u64), CommitFailure>,
    ) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        if let CommitKind::Usage = commit {
            // A failure costs only the count since the last record: the
            // next record or checkpoint carries it.
            match result {
                Ok((_, bytes)) => op.usage.add_bytes(bytes),
                Err(e) => tracing::warn!(op = %op.name, error = %e, "usage could not be recorded"),
            }
            return;
        }
        op.group.committing = false;
        let mut retry_at_once = true;
        let checkpoint = matches!(commit, CommitKind::Checkpoint { .. });
        let event = match (commit, result) {
            (
                CommitKind::Checkpoint {
                    worker,
                    iterations_done,
                    written,
                },
                result,
            ) => op.checkpoint_committed(id, worker, iterations_done, &written, result),
            (
                CommitKind::Batch {
                    workers,
                    best_iteration,
                    written,
                },
                Ok((generation, bytes)),
            ) => {
                // The scheduler heard of these when they finished.
                op.batch_committed(&workers, best_iteration, &written, generation, bytes);
                None
            }
            (CommitKind::Batch { workers, .. }, Err(error)) => {
                retry_at_once = false;
                op.batch_failed(id, workers, &error)
            }
            (CommitKind::Usage, _) => None,
        };
        if checkpoint {
            // A rule this checkpoint met is told first: the scheduler then
            // starts no iteration after it.
            self.stop_if_due(id);
        }
        if let Some(event) = event {
            self.tell(event);
        }
        // Workers held back while the commit was on its way go on.
        let held = self
            .ops
            .get_mut(&id)
            .map(|op| std::mem::take(&mut op.group.held))
            .unwrap_or_default();
        for worker in held {
            self.tell(SchedulerEvent::IterationFinished(worker));
        }
        self.stop_if_due(id);
        // A record that failed is tried again with the next one (the next
        // finished iteration, the flush, the end), not at once: a store
        // that keeps failing would otherwise be asked in a tight loop.
        if retry_at_once {
            self.commit_batch(id);
        }
        self.finish_if_idle(id);
        self.update_status(id);
    }
}

impl<St> Op<St> {
    /// How a repeat's checkpoint after `iterations_done` iterations went;
    /// returns what to tell the scheduler.
    fn checkpoint_committed(
        &mut self,
        id: OpId,
        worker: WorkerId,
        iterations_done: u64,
        written: &Written,
        result: Result<(u64, u64), CommitFailure>,
    ) -> Option<SchedulerEvent> {
        // Covered by the checkpoint, or rewound (counted as lost by the
        // scheduler) if it failed.
        self.runs_since_checkpoint = 0;
        match result {
            Ok((generation, bytes)) => {
                self.progress.iterations_done = iterations_done;
                self.chain.written(written, generation);
                self.selection
                    .recorded(written.candidates, written.candidate_bytes);
                self.usage.add_bytes(bytes);
                // Rewinds go to this checkpoint from now on.
                self.submission = None;
                self.stop.checkpoint_committed();
                self.selection.place(generation);
                let score = self.selection.last_score;
                self.emit(|op| Event::CheckpointCommitted {
                    op,
                    generation,
                    iterations_done,
                    score,
                    recorded: Vec::new(),
                });
                Some(SchedulerEvent::CheckpointCommitted(worker))
            }
            Err(error) if error.storage_full => {
                // Running on would only lose more work: the operation
                // stops at its last checkpoint, to be resumed when there is
                // room (cancelling frees the worker that waits here).
                self.ending.stopped = Some(format!(
                    "the checkpoint after iteration {} could not be saved: {}",
                    iterations_done - 1,
                    error.message
                ));
                Some(SchedulerEvent::Cancel(id))
            }
            Err(error) => {
                let iteration = iterations_done - 1;
                self.emit(|op| Event::IterationFailed {
                    op,
                    iteration,
                    error: format!("the checkpoint could not be saved: {error}"),
                });
                self.progress.last_error.insert(iteration, error.message);
                Some(SchedulerEvent::CheckpointFailed(worker))
            }
        }
    }

    /// A group commit recording `workers`' iterations is in `generation`.
    fn batch_committed(
        &mut self,
        workers: &[(WorkerId, u64)],
        best_iteration: Option<u64>,
        written: &Written,
        generation: u64,
        bytes: u64,
    ) {
        self.group.failures = 0;
        self.chain.written(written, generation);
        self.selection
            .recorded(written.candidates, written.candidate_bytes);
        self.usage.add_bytes(bytes);
        self.selection.place_if(best_iteration, generation);
        self.progress
            .record_finished(workers.iter().map(|(_, i)| *i));
        let iterations_done = self.progress.finished_count;
        self.emit(|op| Event::CheckpointCommitted {
            op,
            generation,
            iterations_done,
            score: None,
            recorded: workers.iter().map(|(_, i)| *i).collect(),
        });
    }

    /// A group commit failed: its iterations wait for the next one (they
    /// stay in memory), unless the store is full, which stops the
    /// operation; returns what to tell the scheduler.
    fn batch_failed(
        &mut self,
        id: OpId,
        workers: Vec<(WorkerId, u64)>,
        error: &CommitFailure,
    ) -> Option<SchedulerEvent> {
        let mut event = None;
        if error.storage_full && self.ending.stopped.is_none() {
            self.ending.stopped = Some(format!(
                "finished iterations could not be recorded: {}",
                error.message
            ));
            event = Some(SchedulerEvent::Cancel(id));
        }
        tracing::warn!(op = %self.name, %error, "finished iterations could not be recorded yet");
        self.selection.unwritten_unless_placed();
        self.group.failed(workers);
        event
    }
}
