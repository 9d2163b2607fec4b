//! The scheduler's behaviour: hand-written schedules, and property tests
//! that drive random event sequences through a simple model of the executor.

use std::collections::{BTreeMap, BTreeSet};

use pragma_scheduler::{
    Action, Budgets, Conclusion, Event, FailReason, OpId, Phase, Plan, Scheduler, StartFrom,
    WaitReason, WorkerId,
};
use proptest::prelude::*;

fn starts(actions: &[Action]) -> Vec<(OpId, WorkerId, u64)> {
    actions
        .iter()
        .filter_map(|a| match *a {
            Action::Start {
                op,
                worker,
                iteration,
                ..
            } => Some((op, worker, iteration)),
            _ => None,
        })
        .collect()
}

fn parallel(iterations: u64, max_workers: Option<u64>) -> Plan {
    Plan::Parallel {
        iterations,
        max_workers,
    }
}

mod schedules {
    use super::*;

    #[test]
    fn operations_queue_first_come_first_served_with_a_reason() {
        let mut s = Scheduler::new(0);
        let (a, _) = s.submit(parallel(4, Some(2)), Budgets::default()).unwrap();
        let (b, _) = s.submit(parallel(4, Some(3)), Budgets::default()).unwrap();
        let Some(Phase::Queued { reason, .. }) = s.status(a) else {
            panic!()
        };
        assert_eq!(reason, WaitReason::CapacityZero);
        assert_eq!(reason.to_string(), "capacity 0");

        // Three slots: the older operation gets what it can use first.
        let actions = s.handle(Event::SetCapacity(3));
        let ops: Vec<OpId> = starts(&actions).iter().map(|s| s.0).collect();
        assert_eq!(ops, vec![a, a, b]);
        assert!(matches!(s.status(b), Some(Phase::Running { .. })));

        let (c, _) = s.submit(parallel(5, Some(5)), Budgets::default()).unwrap();
        let Some(Phase::Queued { reason, .. }) = s.status(c) else {
            panic!()
        };
        assert_eq!(
            reason.to_string(),
            "waiting for 5 of 5 workers (1 earlier operations first)"
        );
    }

    #[test]
    fn operations_start_in_submission_order_and_none_starves_behind_a_large_one() {
        let mut s = Scheduler::new(2);
        let (large, actions) = s
            .submit(parallel(1_000_000, Some(2)), Budgets::default())
            .unwrap();
        let mut running: Vec<WorkerId> = starts(&actions).iter().map(|s| s.1).collect();
        assert_eq!(running.len(), 2);
        let small: Vec<OpId> = (0..5)
            .map(|_| {
                s.submit(parallel(2, Some(2)), Budgets::default())
                    .unwrap()
                    .0
            })
            .collect();
        // The large one's workers finish: each goes to the oldest
        // operation that has not started, while the large one keeps one.
        let mut first_starts = Vec::new();
        for _ in 0..200 {
            let Some(worker) = running.pop() else { break };
            let actions = s.handle(Event::IterationFinished(worker));
            for (op, w, _) in starts(&actions) {
                if op != large && !first_starts.contains(&op) {
                    first_starts.push(op);
                }
                running.insert(0, w);
            }
        }
        assert_eq!(first_starts, small, "admitted in submission order");
        for op in &small {
            assert!(
                matches!(s.status(*op), Some(Phase::Ended { .. })),
                "{op} ended while the large one runs"
            );
        }
        assert!(matches!(s.status(large), Some(Phase::Running { .. })));
    }

    #[test]
    fn a_parallel_operation_shrinks_on_lost_workers_and_grows_back() {
        let mut s = Scheduler::new(3);
        let (op, actions) = s.submit(parallel(10, Some(3)), Budgets::default()).unwrap();
        let running = starts(&actions);
        assert_eq!(running.len(), 3);
        // Two machines go away.
        s.handle(Event::SetCapacity(1));
        s.handle(Event::WorkerLost(running[0].1));
        s.handle(Event::WorkerLost(running[1].1));
        let Some(Phase::Running { progress }) = s.status(op) else {
            panic!()
        };
        assert_eq!((progress.in_flight, progress.lost), (1, 2));
        // They come back: the lost iterations run again first.
        let actions = s.handle(Event::SetCapacity(3));
        let again: Vec<u64> = starts(&actions).iter().map(|s| s.2).collect();
        assert_eq!(again, vec![running[0].2, running[1].2]);
    }

    #[test]
    fn a_pool_that_shrank_takes_back_the_workers_beyond_it_as_they_finish() {
        let mut s = Scheduler::new(3);
        let (op, actions) = s.submit(parallel(10, None), Budgets::default()).unwrap();
        let running = starts(&actions);
        assert_eq!(running.len(), 3);
        s.handle(Event::SetCapacity(1));
        // The first two to finish go back to the pool; the third goes on.
        for (_, worker, _) in &running[..2] {
            assert!(starts(&s.handle(Event::IterationFinished(*worker))).is_empty());
        }
        assert_eq!(s.in_use(), 1);
        let next = starts(&s.handle(Event::IterationFinished(running[2].1)));
        assert_eq!(next.len(), 1);
        let Some(Phase::Running { progress }) = s.status(op) else {
            panic!()
        };
        assert_eq!(progress.in_flight, 1);
    }

    #[test]
    fn a_repeat_failure_rewinds_to_the_last_checkpoint() {
        let mut s = Scheduler::new(1);
        let plan = Plan::Repeat {
            iterations: 6,
            checkpoint_period: 2,
        };
        let (op, actions) = s.submit(plan, Budgets::default()).unwrap();
        let worker = starts(&actions)[0].1;
        s.handle(Event::IterationFinished(worker));
        s.handle(Event::IterationFinished(worker));
        s.handle(Event::CheckpointCommitted(worker)); // covers 0 and 1
        s.handle(Event::IterationFinished(worker)); // 2
        let actions = s.handle(Event::IterationFailed(worker)); // 3 fails
        assert_eq!(
            actions,
            vec![Action::Start {
                op,
                worker,
                iteration: 2,
                attempt: 2,
                from: StartFrom::Checkpoint { iterations_done: 2 }
            }]
        );
        assert_eq!(s.status(op).unwrap().progress().lost, 1);
    }

    #[test]
    fn retries_and_preemptions_have_separate_budgets() {
        let budgets = Budgets {
            retries: 1,
            preemptions: 2,
            max_attempts: None,
        };
        let mut s = Scheduler::new(1);
        let (op, actions) = s.submit(parallel(1, None), budgets).unwrap();
        let mut worker = starts(&actions)[0].1;
        // Two preemptions and one failure: still within both budgets.
        for _ in 0..2 {
            let actions = s.handle(Event::WorkerLost(worker));
            worker = starts(&actions)[0].1;
        }
        let actions = s.handle(Event::IterationFailed(worker));
        let (_, w, _) = starts(&actions)[0];
        let Action::Start { attempt, .. } = actions[0] else {
            panic!()
        };
        assert_eq!(attempt, 4);
        // The second failure uses up the retries.
        let actions = s.handle(Event::IterationFailed(w));
        assert!(actions.contains(&Action::IterationAbandoned { op, iteration: 0 }));
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Failed(FailReason::NoIterationSucceeded)
        }));
    }

    #[test]
    fn the_attempt_cap_stops_an_operation() {
        let budgets = Budgets {
            retries: 10,
            preemptions: 10,
            max_attempts: Some(2),
        };
        let mut s = Scheduler::new(1);
        let (op, actions) = s
            .submit(
                Plan::Repeat {
                    iterations: 5,
                    checkpoint_period: 5,
                },
                budgets,
            )
            .unwrap();
        let worker = starts(&actions)[0].1;
        s.handle(Event::IterationFailed(worker));
        let actions = s.handle(Event::IterationFailed(worker));
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Failed(FailReason::AttemptCapReached { attempts: 2 })
        }));
        assert_eq!(s.in_use(), 0);
    }

    #[test]
    fn cancel_stops_every_worker_and_frees_the_slots() {
        let mut s = Scheduler::new(2);
        let (a, actions) = s.submit(parallel(5, None), Budgets::default()).unwrap();
        assert_eq!(starts(&actions).len(), 2);
        let (b, _) = s.submit(Plan::Async, Budgets::default()).unwrap();
        let actions = s.handle(Event::Cancel(a));
        let stopped = actions
            .iter()
            .filter(|a| matches!(a, Action::Stop { .. }))
            .count();
        assert_eq!(stopped, 2);
        assert!(actions.contains(&Action::Finished {
            op: a,
            outcome: Conclusion::Cancelled
        }));
        // The freed slot goes to the waiting operation.
        assert_eq!(
            starts(&actions).iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![b]
        );
        assert!(s.handle(Event::Cancel(a)).is_empty());
    }

    #[test]
    fn a_stop_rule_ends_the_operation_as_a_success_with_what_it_has() {
        let mut s = Scheduler::new(2);
        let (a, actions) = s.submit(parallel(10, None), Budgets::default()).unwrap();
        let workers: Vec<WorkerId> = starts(&actions).iter().map(|s| s.1).collect();
        s.handle(Event::IterationFinished(workers[0]));
        let actions = s.handle(Event::StopEarly(a));
        // The other iteration in flight is stopped; none starts.
        assert!(actions.contains(&Action::Stop {
            op: a,
            worker: workers[1]
        }));
        assert!(starts(&actions).is_empty());
        assert!(actions.contains(&Action::Finished {
            op: a,
            outcome: Conclusion::Succeeded
        }));
        assert_eq!(s.in_use(), 0);
        // With nothing finished, there is nothing to succeed with.
        let (b, _) = s.submit(parallel(3, None), Budgets::default()).unwrap();
        assert!(s.handle(Event::StopEarly(b)).contains(&Action::Finished {
            op: b,
            outcome: Conclusion::Cancelled
        }));
    }

    #[test]
    fn a_stop_rule_met_at_a_repeat_s_checkpoint_starts_nothing_after_it() {
        // A rule is judged at a checkpoint and told before its commit: the
        // checkpoint is awaited, and no iteration starts after it.
        let mut s = Scheduler::new(1);
        let plan = Plan::Repeat {
            iterations: 20,
            checkpoint_period: 1,
        };
        let (op, actions) = s.submit(plan, Budgets::default()).unwrap();
        let worker = starts(&actions)[0].1;
        s.handle(Event::IterationFinished(worker));
        s.handle(Event::CheckpointCommitted(worker));
        let actions = s.handle(Event::IterationFinished(worker));
        assert!(
            matches!(actions[..], [Action::Checkpoint { .. }]),
            "{actions:?}"
        );
        assert!(s.handle(Event::StopEarly(op)).is_empty(), "it waits");
        let actions = s.handle(Event::CheckpointCommitted(worker));
        assert!(starts(&actions).is_empty(), "{actions:?}");
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Succeeded
        }));
        assert_eq!(s.in_use(), 0);
        assert_eq!(s.status(op).unwrap().progress().done, 2);
    }

    #[test]
    fn a_notice_lets_the_running_iteration_finish_then_a_repeat_checkpoints_it() {
        let mut s = Scheduler::new(1);
        let plan = Plan::Repeat {
            iterations: 20,
            checkpoint_period: 5,
        };
        let (op, actions) = s.submit(plan, Budgets::default()).unwrap();
        let worker = starts(&actions)[0].1;
        // Two iterations past the start, the third running.
        s.handle(Event::IterationFinished(worker));
        s.handle(Event::IterationFinished(worker));
        assert!(s.handle(Event::Suspend(op)).is_empty(), "it waits");
        // The running one finishes: no fourth starts; the three are
        // checkpointed though the period is 5.
        let actions = s.handle(Event::IterationFinished(worker));
        assert_eq!(
            actions,
            vec![Action::Checkpoint {
                op,
                worker,
                iterations_done: 3
            }]
        );
        let actions = s.handle(Event::CheckpointCommitted(worker));
        assert!(starts(&actions).is_empty());
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Suspended
        }));
        assert_eq!(s.in_use(), 0);
        assert_eq!(s.status(op).unwrap().progress().lost, 0);
    }

    #[test]
    fn a_body_that_fails_while_suspending_spends_no_retry_and_the_operation_suspends() {
        let mut s = Scheduler::new(1);
        let plan = Plan::Repeat {
            iterations: 20,
            checkpoint_period: 5,
        };
        let budgets = Budgets {
            retries: 0,
            ..Budgets::default()
        };
        let (op, actions) = s.submit(plan, budgets).unwrap();
        let worker = starts(&actions)[0].1;
        s.handle(Event::IterationFinished(worker));
        s.handle(Event::Suspend(op));
        // The machine's SIGTERM reached the body: no retries are left, yet
        // this is no failure; the one finished since the start is lost.
        let actions = s.handle(Event::IterationFailed(worker));
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Suspended
        }));
        let progress = s.status(op).unwrap().progress();
        assert_eq!((progress.failed, progress.lost), (0, 1));
    }

    #[test]
    fn after_the_grace_the_runs_still_going_are_stopped_and_counted_lost() {
        let mut s = Scheduler::new(2);
        let (op, actions) = s.submit(parallel(10, None), Budgets::default()).unwrap();
        let workers: Vec<WorkerId> = starts(&actions).iter().map(|s| s.1).collect();
        s.handle(Event::Suspend(op));
        // One finishes within the grace; nothing new starts.
        let actions = s.handle(Event::IterationFinished(workers[0]));
        assert!(starts(&actions).is_empty());
        let actions = s.handle(Event::SuspendNow(op));
        assert!(actions.contains(&Action::Stop {
            op,
            worker: workers[1]
        }));
        assert!(actions.contains(&Action::Finished {
            op,
            outcome: Conclusion::Suspended
        }));
        let progress = s.status(op).unwrap().progress();
        assert_eq!((progress.done, progress.lost), (1, 1));
        // A repeat resumed later starts from its checkpoint: the scheduler
        // side of that is `resume`, tested with the rest of resuming.
        assert!(s.handle(Event::SuspendNow(op)).is_empty());
    }

    #[test]
    fn an_invalid_plan_is_refused() {
        let mut s = Scheduler::new(1);
        assert!(s.submit(parallel(0, None), Budgets::default()).is_err());
        assert!(s.submit(parallel(1, Some(0)), Budgets::default()).is_err());
        let repeat = Plan::Repeat {
            iterations: 1,
            checkpoint_period: 0,
        };
        assert_eq!(
            s.submit(repeat, Budgets::default())
                .unwrap_err()
                .to_string(),
            "invalid plan: a checkpoint period must be at least 1"
        );
    }

    #[test]
    fn a_resumed_operation_never_runs_what_was_finished() {
        use pragma_scheduler::Resume;
        let mut s = Scheduler::new(8);
        let finished = Resume::Parallel {
            finished: vec![0..1, 3..4, 2..3],
        };
        let (op, actions) = s
            .resume(parallel(6, None), Budgets::default(), finished)
            .unwrap();
        let again: Vec<u64> = starts(&actions).iter().map(|s| s.2).collect();
        assert_eq!(again, vec![1, 4, 5]);
        assert_eq!(s.status(op).unwrap().progress().done, 3);

        let repeat = Plan::Repeat {
            iterations: 10,
            checkpoint_period: 2,
        };
        let done = Resume::Repeat { iterations_done: 4 };
        let (_, actions) = s.resume(repeat, Budgets::default(), done).unwrap();
        assert!(matches!(
            actions[..],
            [Action::Start {
                iteration: 4,
                from: StartFrom::Checkpoint { iterations_done: 4 },
                ..
            }]
        ));

        // Everything was finished already: it ends at once.
        let all = Resume::Parallel {
            finished: vec![1..2, 0..1],
        };
        let (op, actions) = s
            .resume(parallel(2, None), Budgets::default(), all)
            .unwrap();
        assert_eq!(
            actions,
            vec![Action::Finished {
                op,
                outcome: Conclusion::Succeeded
            }]
        );
        let wrong = Resume::Repeat { iterations_done: 1 };
        assert!(
            s.resume(parallel(2, None), Budgets::default(), wrong)
                .is_err()
        );
    }

    #[test]
    fn after_a_crash_every_worker_is_lost_and_work_goes_on() {
        let mut s = Scheduler::new(2);
        let (op, _) = s.submit(parallel(4, None), Budgets::default()).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        // A new process restores the snapshot; its workers are gone.
        let mut restored: Scheduler = serde_json::from_str(&json).unwrap();
        let actions = restored.recover_after_crash();
        let again: Vec<u64> = starts(&actions).iter().map(|s| s.2).collect();
        assert_eq!(again, vec![0, 1]);
        assert_eq!(restored.status(op).unwrap().progress().lost, 2);
    }
}

/// One step of a random schedule; indexes pick among what is outstanding.
#[derive(Debug, Clone)]
enum Step {
    Submit(Plan, Budgets),
    Finish(usize),
    Fail(usize),
    Commit(usize),
    FailCheckpoint(usize),
    Lose(usize),
    Stale(usize),
    SetCapacity(u64),
    Cancel(usize),
    StopEarly(usize),
    Suspend(usize),
    SuspendNow(usize),
    Snapshot,
    Crash,
}

fn plan() -> impl Strategy<Value = Plan> {
    prop_oneof![
        (1u64..8, 1u64..4).prop_map(|(iterations, checkpoint_period)| Plan::Repeat {
            iterations,
            checkpoint_period
        }),
        (1u64..10, proptest::option::of(1u64..4)).prop_map(|(iterations, max_workers)| {
            Plan::Parallel {
                iterations,
                max_workers,
            }
        }),
        Just(Plan::Async),
    ]
}

fn budgets() -> impl Strategy<Value = Budgets> {
    (0u32..3, 0u32..4, proptest::option::of(1u64..40)).prop_map(
        |(retries, preemptions, max_attempts)| Budgets {
            retries,
            preemptions,
            max_attempts,
        },
    )
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (plan(), budgets()).prop_map(|(p, b)| Step::Submit(p, b)),
        8 => any::<usize>().prop_map(Step::Finish),
        2 => any::<usize>().prop_map(Step::Fail),
        4 => any::<usize>().prop_map(Step::Commit),
        1 => any::<usize>().prop_map(Step::FailCheckpoint),
        2 => any::<usize>().prop_map(Step::Lose),
        1 => any::<usize>().prop_map(Step::Stale),
        2 => (0u64..5).prop_map(Step::SetCapacity),
        1 => any::<usize>().prop_map(Step::Cancel),
        1 => any::<usize>().prop_map(Step::StopEarly),
        1 => any::<usize>().prop_map(Step::Suspend),
        1 => any::<usize>().prop_map(Step::SuspendNow),
        1 => Just(Step::Snapshot),
        1 => Just(Step::Crash),
    ]
}

/// What a worker is doing, as the model of the executor knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Job {
    Running { op: OpId, iteration: u64 },
    Checkpointing { op: OpId, done: u64 },
}

/// A model of the executor and of what the scheduler promised, checking
/// every action against the invariants.
#[derive(Default)]
struct Model {
    jobs: BTreeMap<WorkerId, Job>,
    gone: Vec<WorkerId>,
    seen_workers: BTreeSet<WorkerId>,
    plans: BTreeMap<OpId, (Plan, Budgets)>,
    succeeded: BTreeMap<OpId, BTreeSet<u64>>,
    abandoned: BTreeMap<OpId, BTreeSet<u64>>,
    failures: BTreeMap<(OpId, u64), u32>,
    /// Repeat: iterations committed, and finished on the current worker.
    committed: BTreeMap<OpId, u64>,
    finished: BTreeMap<OpId, u64>,
    ended: BTreeMap<OpId, Conclusion>,
    /// Operations a stop rule ended (`Event::StopEarly`).
    stopped_early: BTreeSet<OpId>,
    /// Repeats a stop rule met while their checkpoint was on its way: they
    /// end once it is committed (or failed, or lost), starting nothing.
    stopping_early: BTreeSet<OpId>,
    /// Operations told of a preemption notice (`Event::Suspend`).
    suspended: BTreeSet<OpId>,
    log: Vec<Action>,
}

impl Model {
    fn apply(&mut self, s: &Scheduler, actions: Vec<Action>) -> Result<(), TestCaseError> {
        for action in &actions {
            match *action {
                Action::Start {
                    op,
                    worker,
                    iteration,
                    from,
                    ..
                } => {
                    prop_assert!(!self.ended.contains_key(&op), "start after the end");
                    prop_assert!(
                        !self.suspended.contains(&op),
                        "a start after a preemption notice"
                    );
                    prop_assert!(
                        !self.stopping_early.contains(&op),
                        "a start after a stop rule was met"
                    );
                    prop_assert!(
                        !self
                            .succeeded
                            .get(&op)
                            .is_some_and(|s| s.contains(&iteration)),
                        "a finished iteration started again"
                    );
                    if self.seen_workers.insert(worker) {
                        prop_assert!(s.in_use() <= s.capacity(), "more workers than capacity");
                    }
                    let (plan, _) = self.plans[&op];
                    match plan {
                        Plan::Repeat { .. } => {
                            let committed = self.committed.get(&op).copied().unwrap_or(0);
                            let finished = self.finished.get(&op).copied().unwrap_or(0);
                            match from {
                                StartFrom::Previous => prop_assert_eq!(iteration, finished),
                                StartFrom::Checkpoint { iterations_done } => {
                                    prop_assert_eq!(iterations_done, committed);
                                    prop_assert_eq!(iteration, committed);
                                }
                                StartFrom::Submission => {
                                    prop_assert_eq!((iteration, committed), (0, 0));
                                }
                            }
                            if from != StartFrom::Previous {
                                self.finished.insert(op, committed);
                            }
                        }
                        Plan::Parallel { max_workers, .. } => {
                            prop_assert_eq!(from, StartFrom::Submission);
                            // The others of this operation (this worker's
                            // previous iteration is over).
                            let in_flight = self
                                .jobs
                                .iter()
                                .filter(|(w, j)| **w != worker && job_op(j) == op)
                                .count() as u64;
                            prop_assert!(
                                in_flight < max_workers.unwrap_or(u64::MAX),
                                "more than P in flight"
                            );
                        }
                        Plan::Async => prop_assert_eq!(iteration, 0),
                    }
                    self.jobs.insert(worker, Job::Running { op, iteration });
                }
                Action::Checkpoint {
                    op,
                    worker,
                    iterations_done,
                } => {
                    let Plan::Repeat {
                        iterations,
                        checkpoint_period,
                    } = self.plans[&op].0
                    else {
                        return Err(TestCaseError::fail("checkpoint of a non-repeat"));
                    };
                    // A preemption notice checkpoints whatever finished.
                    prop_assert!(
                        iterations_done % checkpoint_period == 0
                            || iterations_done == iterations
                            || self.suspended.contains(&op)
                    );
                    prop_assert_eq!(Some(&iterations_done), self.finished.get(&op));
                    self.jobs.insert(
                        worker,
                        Job::Checkpointing {
                            op,
                            done: iterations_done,
                        },
                    );
                }
                Action::Stop { worker, .. } | Action::Release { worker, .. } => {
                    self.jobs.remove(&worker);
                    self.gone.push(worker);
                }
                Action::IterationAbandoned { op, iteration } => {
                    prop_assert!(
                        self.abandoned.entry(op).or_default().insert(iteration),
                        "abandoned twice"
                    );
                    prop_assert!(
                        !self
                            .succeeded
                            .get(&op)
                            .is_some_and(|s| s.contains(&iteration))
                    );
                }
                Action::Finished { op, outcome } => {
                    prop_assert!(self.ended.insert(op, outcome).is_none(), "ended twice");
                    prop_assert!(
                        !self.jobs.values().any(|j| job_op(j) == op),
                        "ended with workers busy"
                    );
                }
            }
        }
        self.log.extend(actions);
        Ok(())
    }

    /// Sends a report about a worker, updating what the model knows first.
    fn report(
        &mut self,
        s: &mut Scheduler,
        worker: WorkerId,
        event: Event,
    ) -> Result<(), TestCaseError> {
        let job = self.jobs[&worker];
        let op = job_op(&job);
        let (plan, budgets) = self.plans[&op];
        let lost_before = s.status(op).map(|st| st.progress().lost).unwrap_or(0);
        // Work a lost worker takes with it: repeat, the iterations finished
        // since the checkpoint and the running one; parallel, the running one.
        let expected_loss = match plan {
            Plan::Repeat { .. } => {
                self.finished.get(&op).copied().unwrap_or(0)
                    - self.committed.get(&op).copied().unwrap_or(0)
                    + u64::from(is_running(&job))
            }
            _ => 1,
        };
        match (&event, job) {
            (Event::IterationFinished(_), Job::Running { iteration, .. }) => {
                if matches!(plan, Plan::Repeat { .. }) {
                    self.finished.insert(op, iteration + 1);
                } else {
                    self.succeeded.entry(op).or_default().insert(iteration);
                }
            }
            (Event::CheckpointCommitted(_), Job::Checkpointing { done, .. }) => {
                self.committed.insert(op, done);
                for i in 0..done {
                    self.succeeded.entry(op).or_default().insert(i);
                }
            }
            (Event::WorkerLost(_), _) => {
                self.jobs.remove(&worker);
                self.gone.push(worker);
            }
            _ => {}
        }
        let failing = match (&event, job) {
            (Event::IterationFailed(_), Job::Running { iteration, .. }) => Some(iteration),
            (Event::CheckpointFailed(_), Job::Checkpointing { done, .. }) => Some(done - 1),
            _ => None,
        };
        if failing.is_some() && matches!(plan, Plan::Repeat { .. }) {
            let committed = self.committed.get(&op).copied().unwrap_or(0);
            self.finished.insert(op, committed);
        }
        let actions = s.handle(event.clone());
        // While a preemption notice winds it down, a failure is the
        // machine's signal, not the body's: it spends no retry. Nor once
        // a stop rule was met: the operation stops with what it has.
        let failing =
            failing.filter(|_| !self.suspended.contains(&op) && !self.stopping_early.contains(&op));
        if let Some(iteration) = failing {
            let count = self.failures.entry((op, iteration)).or_default();
            *count += 1;
            if *count > budgets.retries {
                prop_assert!(
                    actions.contains(&Action::IterationAbandoned { op, iteration }),
                    "iteration {} of {} failed {} times with {} retries: {:?}",
                    iteration,
                    op,
                    count,
                    budgets.retries,
                    actions
                );
            }
        }
        if let Event::WorkerLost(_) = event {
            let lost = s.status(op).map(|st| st.progress().lost).unwrap_or(0) - lost_before;
            prop_assert_eq!(lost, expected_loss);
        }
        if let (
            Event::WorkerLost(_),
            Plan::Repeat {
                checkpoint_period, ..
            },
        ) = (&event, plan)
        {
            let lost = s.status(op).map(|st| st.progress().lost).unwrap_or(0) - lost_before;
            prop_assert!(
                lost <= checkpoint_period,
                "lost {} iterations with period {}",
                lost,
                checkpoint_period
            );
            let committed = self.committed.get(&op).copied().unwrap_or(0);
            self.finished.insert(op, committed);
        }
        // A progress bar's count: every iteration that ran through, kept or
        // not yet; never fewer than those kept.
        if let (Some(status), Plan::Repeat { .. }) = (s.status(op), plan) {
            let progress = status.progress();
            if !self.ended.contains_key(&op) && !matches!(event, Event::WorkerLost(_)) {
                prop_assert_eq!(
                    progress.finished,
                    self.finished.get(&op).copied().unwrap_or(0)
                );
            }
            prop_assert!(progress.done <= progress.finished);
        }
        let ended_before = self.ended.contains_key(&op);
        self.apply(s, actions)?;
        if !ended_before && self.stopping_early.contains(&op) {
            // The checkpoint it awaited is committed, failed or lost: it
            // ends with what it has.
            let kept = self.committed.get(&op).copied().unwrap_or(0) > 0;
            let expected = if kept {
                Conclusion::Succeeded
            } else {
                Conclusion::Cancelled
            };
            prop_assert_eq!(self.ended.get(&op), Some(&expected));
        }
        Ok(())
    }

    fn pick(&self, index: usize, want: impl Fn(&Job) -> bool) -> Option<WorkerId> {
        let fitting: Vec<WorkerId> = self
            .jobs
            .iter()
            .filter(|(_, j)| want(j))
            .map(|(w, _)| *w)
            .collect();
        (!fitting.is_empty()).then(|| fitting[index % fitting.len()])
    }
}

fn job_op(job: &Job) -> OpId {
    match *job {
        Job::Running { op, .. } | Job::Checkpointing { op, .. } => op,
    }
}

fn is_running(job: &Job) -> bool {
    matches!(job, Job::Running { .. })
}

fn is_checkpointing(job: &Job) -> bool {
    matches!(job, Job::Checkpointing { .. })
}

/// Runs the steps; with `restore`, every `Snapshot` step replaces the
/// scheduler by its own JSON round trip. Then drains: capacity comes back
/// and everything succeeds until every operation has ended.
fn run(steps: &[Step], restore: bool) -> Result<Model, TestCaseError> {
    let mut s = Scheduler::new(2);
    let mut m = Model::default();
    for step in steps {
        match step {
            Step::Submit(plan, budgets) => {
                let (op, actions) = s.submit(*plan, *budgets).unwrap();
                m.plans.insert(op, (*plan, *budgets));
                m.apply(&s, actions)?;
            }
            Step::Finish(i) => {
                if let Some(w) = m.pick(*i, is_running) {
                    m.report(&mut s, w, Event::IterationFinished(w))?;
                }
            }
            Step::Fail(i) => {
                if let Some(w) = m.pick(*i, is_running) {
                    m.report(&mut s, w, Event::IterationFailed(w))?;
                }
            }
            Step::Commit(i) => {
                if let Some(w) = m.pick(*i, is_checkpointing) {
                    m.report(&mut s, w, Event::CheckpointCommitted(w))?;
                }
            }
            Step::FailCheckpoint(i) => {
                if let Some(w) = m.pick(*i, is_checkpointing) {
                    m.report(&mut s, w, Event::CheckpointFailed(w))?;
                }
            }
            Step::Lose(i) => {
                if let Some(w) = m.pick(*i, |_| true) {
                    m.report(&mut s, w, Event::WorkerLost(w))?;
                }
            }
            Step::Stale(i) => {
                if !m.gone.is_empty() {
                    let w = m.gone[i % m.gone.len()];
                    let before = s.clone();
                    for event in [
                        Event::IterationFinished(w),
                        Event::CheckpointCommitted(w),
                        Event::WorkerLost(w),
                    ] {
                        prop_assert!(s.handle(event).is_empty(), "a stale report had an effect");
                    }
                    prop_assert_eq!(&s, &before);
                }
            }
            Step::SetCapacity(n) => {
                let actions = s.handle(Event::SetCapacity(*n));
                m.apply(&s, actions)?;
            }
            Step::Cancel(i) => {
                let ops: Vec<OpId> = m.plans.keys().copied().collect();
                if !ops.is_empty() {
                    let actions = s.handle(Event::Cancel(ops[i % ops.len()]));
                    m.apply(&s, actions)?;
                }
            }
            Step::StopEarly(i) => {
                let ops: Vec<OpId> = m.plans.keys().copied().collect();
                if !ops.is_empty() {
                    let op = ops[i % ops.len()];
                    let ended_before = m.ended.contains_key(&op);
                    let checkpointing = m
                        .jobs
                        .values()
                        .any(|j| matches!(j, Job::Checkpointing { op: o, .. } if *o == op));
                    let actions = s.handle(Event::StopEarly(op));
                    if !ended_before {
                        m.stopped_early.insert(op);
                    }
                    m.apply(&s, actions)?;
                    if !ended_before && checkpointing {
                        // Its checkpoint on its way is awaited.
                        prop_assert!(!m.ended.contains_key(&op), "ended before its checkpoint");
                        m.stopping_early.insert(op);
                        continue;
                    }
                    // It ended, with what it had: a checkpoint or a
                    // finished iteration makes it a success.
                    let kept = match m.plans[&op].0 {
                        Plan::Repeat { .. } => m.committed.get(&op).copied().unwrap_or(0) > 0,
                        _ => m.succeeded.get(&op).is_some_and(|s| !s.is_empty()),
                    };
                    if !ended_before {
                        let expected = if kept {
                            Conclusion::Succeeded
                        } else {
                            Conclusion::Cancelled
                        };
                        prop_assert_eq!(m.ended.get(&op), Some(&expected));
                    }
                }
            }
            Step::Suspend(i) | Step::SuspendNow(i) => {
                let ops: Vec<OpId> = m.plans.keys().copied().collect();
                if !ops.is_empty() {
                    let op = ops[i % ops.len()];
                    let event = if matches!(step, Step::Suspend(_)) {
                        if !m.ended.contains_key(&op) {
                            m.suspended.insert(op);
                        }
                        Event::Suspend(op)
                    } else {
                        Event::SuspendNow(op)
                    };
                    let actions = s.handle(event);
                    m.apply(&s, actions)?;
                }
            }
            Step::Snapshot => {
                if restore {
                    let json = serde_json::to_string(&s).unwrap();
                    s = serde_json::from_str(&json).unwrap();
                }
            }
            Step::Crash => {
                for (w, _) in std::mem::take(&mut m.jobs) {
                    m.gone.push(w);
                }
                for op in m.plans.keys() {
                    let committed = m.committed.get(op).copied().unwrap_or(0);
                    m.finished.insert(*op, committed);
                }
                let actions = s.recover_after_crash();
                m.apply(&s, actions)?;
            }
        }
    }
    let actions = s.handle(Event::SetCapacity(2));
    m.apply(&s, actions)?;
    for _ in 0..10_000 {
        let Some((&w, job)) = m.jobs.iter().next() else {
            break;
        };
        let event = if is_running(job) {
            Event::IterationFinished(w)
        } else {
            Event::CheckpointCommitted(w)
        };
        m.report(&mut s, w, event)?;
    }
    prop_assert!(m.jobs.is_empty(), "the drain did not finish");
    prop_assert_eq!(s.in_use(), 0);
    for (op, (plan, _)) in &m.plans {
        let outcome = m.ended.get(op).copied();
        prop_assert!(outcome.is_some(), "{} never ended: {:?}", op, s.status(*op));
        let ended = matches!(s.status(*op), Some(Phase::Ended { .. }));
        prop_assert!(ended, "status of an ended operation");
        if matches!(outcome, Some(Conclusion::Cancelled | Conclusion::Suspended))
            || matches!(plan, Plan::Repeat { .. })
            || m.stopped_early.contains(op)
        {
            continue;
        }
        // Parallel: every index ended exactly once, succeeded or abandoned.
        let succeeded = m.succeeded.get(op).cloned().unwrap_or_default();
        let abandoned = m.abandoned.get(op).cloned().unwrap_or_default();
        prop_assert!(succeeded.is_disjoint(&abandoned));
        let all: BTreeSet<u64> = (0..plan.iterations()).collect();
        prop_assert_eq!(&succeeded | &abandoned, all);
        prop_assert_eq!(
            outcome == Some(Conclusion::Succeeded),
            !succeeded.is_empty()
        );
    }
    for (op, outcome) in &m.ended {
        if m.stopped_early.contains(op) {
            continue;
        }
        if let (Plan::Repeat { iterations, .. }, Conclusion::Succeeded) = (m.plans[op].0, outcome) {
            prop_assert_eq!(m.committed.get(op), Some(&iterations));
        }
    }
    Ok(m)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn random_schedules_keep_every_invariant(steps in proptest::collection::vec(step(), 0..80)) {
        run(&steps, false)?;
    }

    #[test]
    fn snapshot_and_restore_are_invisible_and_runs_are_deterministic(
        steps in proptest::collection::vec(step(), 0..80),
    ) {
        let plain = run(&steps, false)?;
        let again = run(&steps, false)?;
        let restored = run(&steps, true)?;
        prop_assert_eq!(&plain.log, &again.log);
        prop_assert_eq!(&plain.log, &restored.log);
        prop_assert_eq!(&plain.ended, &restored.ended);
    }

    /// A parallel operation resumed from finished ranges (in any order,
    /// overlapping, reaching past its end) runs every other iteration
    /// exactly once, in ascending order, and counts the finished ones done.
    #[test]
    fn a_resume_from_ranges_runs_exactly_the_rest_in_order(
        total in 1u64..60,
        ranges in proptest::collection::vec((0u64..70, 0u64..12), 0..8),
        workers in 1u64..4,
    ) {
        use pragma_scheduler::Resume;
        let finished: Vec<std::ops::Range<u64>> =
            ranges.iter().map(|&(start, len)| start..start + len).collect();
        let done: BTreeSet<u64> = finished.iter().flat_map(|r| r.clone()).filter(|&i| i < total).collect();
        let mut s = Scheduler::new(workers);
        let (op, mut actions) = s
            .resume(parallel(total, None), Budgets::default(), Resume::Parallel { finished })
            .unwrap();
        prop_assert_eq!(s.status(op).unwrap().progress().done, done.len() as u64);
        let mut ran = Vec::new();
        loop {
            let started = starts(&actions);
            if started.is_empty() {
                break;
            }
            let mut next = Vec::new();
            for (_, worker, iteration) in started {
                ran.push(iteration);
                next.extend(s.handle(Event::IterationFinished(worker)));
            }
            actions = next;
        }
        let rest: Vec<u64> = (0..total).filter(|i| !done.contains(i)).collect();
        prop_assert_eq!(ran, rest);
        prop_assert_eq!(s.status(op).unwrap().progress().done, total);
    }
}
