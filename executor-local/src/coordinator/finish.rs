//! The end of an operation: once the scheduler says so and nothing is
//! left to record, its final status and best state are worked out, its
//! final record written, and the outcome handed to its handle.

use std::sync::Arc;

use pragma_checkpoint::{Lease, Store};
use pragma_scheduler::OpId;

use super::{Coordinator, Msg};
use crate::persist::{CandidatesPart, commit_record, restore_generation};
use crate::record::{BestRecord, Record, score_value};
use crate::report::{Best, BestScore, Event, FinalStatus, Outcome, Status};
use crate::shared::Shared;
use pragma_contract::Host;

/// What concluding an operation needs, away from the coordinator.
struct Conclusion<St> {
    name: String,
    lease: Lease,
    var: Arc<str>,
    status: FinalStatus,
    record: Record,
    candidates: CandidatesPart,
    /// The best to hand back (a succeeded operation's), and its state if
    /// it is in memory.
    best: Option<BestRecord>,
    best_state: Option<St>,
    last_generation: u64,
}

impl<H: Host, S: Store + 'static> Coordinator<H, S> {
    /// Ends an operation once the scheduler says so and no commit is on
    /// its way: works out the status and the best state, writes the final
    /// record.
    pub(super) fn finish_if_idle(&mut self, id: OpId) {
        let Some(op) = self.ops.get_mut(&id) else {
            return;
        };
        let Some(outcome) = op.ending.outcome else {
            return;
        };
        if op.group.committing || op.ending.done.is_none() {
            return;
        }
        if op.group.records_before_end(op.ending.stopped.is_some()) {
            // Record the last finished iterations first.
            self.commit_batch(id);
            return;
        }
        op.group.committing = true;
        let status = op
            .ending
            .status(outcome, &op.selection, &self.shared.config);
        if status == FinalStatus::Cancelled {
            op.emit(|op| Event::Cancelled { op });
        }
        op.refresh_usage(
            self.scheduler.status(id).map(|s| s.progress()),
            &*self.shared.backend,
        );
        let (record, candidates) = op.final_record(&status);
        let conclusion = Conclusion {
            name: op.name.clone(),
            lease: op.lease.clone(),
            var: Arc::clone(&op.var),
            record,
            candidates,
            // A cancelled operation hands back its best so far too (for
            // the host to apply only if its user asks for it).
            best: if matches!(
                status,
                FinalStatus::Succeeded | FinalStatus::Cancelled | FinalStatus::Suspended
            ) {
                op.selection.best.clone()
            } else {
                None
            },
            best_state: op.selection.best_state.take(),
            last_generation: op.chain.last_generation,
            status,
        };
        let shared = Arc::clone(&self.shared);
        let control = self.control.clone();
        let turn = Arc::clone(&op.commit_turn);
        self.tasks.spawn(async move {
            let _turn = turn.lock().await;
            let (status, best) = conclude(&shared, conclusion).await;
            let _ = control.send(Msg::Finalized {
                op: id,
                status,
                best,
            });
        });
    }

    /// An operation was concluded: its handle gets the outcome, and the
    /// coordinator forgets it.
    pub(super) fn finalized(
        &mut self,
        id: OpId,
        status: FinalStatus,
        best: Option<Best<H::State>>,
    ) {
        let Some(mut op) = self.ops.remove(&id) else {
            return;
        };
        self.by_name.remove(&op.name);
        let best_score = best.as_ref().map(|b| BestScore {
            iteration: b.iteration,
            score: b.score,
        });
        op.emit(|op| Event::Finished {
            op,
            status: status.clone(),
            best: best_score,
        });
        let outcome = Outcome {
            op: op.name.clone(),
            status,
            best,
            candidate_count: op.selection.count,
            failed_iterations: op.progress.abandoned.clone(),
            usage: op.usage.total,
            stopped_early: op.stop.met.take(),
        };
        if let Some(schedule) = self.scheduler.status(id) {
            op.status.send_replace(Status {
                schedule,
                best: best_score,
            });
        }
        if let Some(done) = op.ending.done.take() {
            let _ = done.send(outcome);
        }
    }
}

/// Concludes an operation: the best state (restored from the store if it
/// is not in memory; an operation whose best is gone fails) and the final
/// record.
async fn conclude<H: Host, S: Store>(
    shared: &Shared<H, S>,
    conclusion: Conclusion<H::State>,
) -> (FinalStatus, Option<Best<H::State>>) {
    let Conclusion {
        name,
        lease,
        var,
        mut status,
        mut record,
        candidates,
        best,
        best_state,
        last_generation,
    } = conclusion;
    let best = match best {
        None => None,
        Some(best) => {
            let state = match best_state {
                Some(state) => Ok(state),
                None => {
                    let generation = best.generation.unwrap_or(last_generation);
                    restore_generation(shared, &name, generation, "state")
                        .await
                        .map(|mut state| {
                            shared.host.remove_iteration_var(&mut state, &var);
                            state
                        })
                }
            };
            match state {
                Ok(state) => Some(Best {
                    iteration: best.iteration,
                    score: score_value(&best.score),
                    state,
                }),
                // A cancel stays a cancel: only its best so far is gone.
                Err(e) if matches!(status, FinalStatus::Cancelled | FinalStatus::Suspended) => {
                    tracing::warn!(op = %name, error = %e, "the best state so far cannot be restored");
                    None
                }
                Err(e) => {
                    status = FinalStatus::Failed {
                        reason: format!("the best state cannot be restored: {e}"),
                    };
                    record.ended = Some(status.clone());
                    None
                }
            }
        }
    };
    // A stopped operation's store holds its last checkpoint as a crash
    // would leave it: no final record, which would count what was never
    // saved (and there is no room for it anyway).
    let stopped = matches!(status, FinalStatus::Stopped { .. });
    if !stopped && let Err(e) = commit_record(shared, &lease, &record, &candidates).await {
        tracing::warn!(op = %name, error = %e, "the final record could not be written");
    }
    // No commit follows to clean up after: what an interrupted commit or
    // clean-up left (a request that failed, or took effect unanswered)
    // goes now.
    if let Err(e) = shared.log.remove_leftovers(&lease).await {
        tracing::warn!(op = %name, error = %e, "what interrupted commits left could not be deleted");
    }
    (status, best)
}
