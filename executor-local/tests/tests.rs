//! End-to-end behaviour of the executor with the in-memory store and the
//! scripted host.

use std::sync::Arc;
use std::time::Duration;

use pragma_checkpoint::MemoryStore;
use pragma_executor_local::testkit::{FaultyBackend, MapState, ScriptedHost};
use pragma_executor_local::{
    CandidateScore, Config, Event, ExecError, Executor, FinalStatus, Outcome,
};
use pragma_selector::Evaluation;

mod chaos;
mod conformance;
mod durability;
mod extend;
mod preemption;
mod stop_rules;

fn config(workers: u64) -> Config {
    Config::default()
        .workers(workers)
        .retries(2)
        .preemptions(50)
        .max_attempts(None)
        .record_interval(Duration::from_millis(2))
}

fn executor(host: &ScriptedHost, workers: u64) -> Executor<ScriptedHost, MemoryStore> {
    Executor::new(host.clone(), MemoryStore::new(), config(workers))
}

async fn run(host: &ScriptedHost, cell: &str) -> (Outcome<MapState>, Vec<Event>) {
    let (outcome, events, _) = run_reading(host, cell).await;
    (outcome, events)
}

/// [`run`], and the candidates the store holds at the end.
async fn run_reading(
    host: &ScriptedHost,
    cell: &str,
) -> (Outcome<MapState>, Vec<Event>, Vec<CandidateScore>) {
    let executor = executor(host, 3);
    let state = MapState::from([("data".to_string(), 1.0)]);
    let handle = executor.submit(cell, state).await.expect("submit");
    let (outcome, events) = handle.wait_with_events().await.expect("an outcome");
    let candidates = executor.candidates(&outcome.op).await.expect("candidates");
    assert_eq!(candidates.count(), outcome.candidate_count);
    let candidates = candidates.collect().await.expect("every candidate");
    (outcome, events, candidates)
}

/// The iterations of `op`'s candidates in the store, in order.
async fn candidate_iterations(
    executor: &Executor<ScriptedHost, MemoryStore>,
    op: &str,
) -> Vec<u64> {
    let candidates = executor.candidates(op).await.unwrap();
    let mut iterations: Vec<u64> = candidates
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|c| c.iteration)
        .collect();
    iterations.sort_unstable();
    iterations
}

/// How an outcome ended and its best (iteration, score, state): what two
/// runs of one cell must agree on, however they were interrupted.
fn summary(outcome: &Outcome<MapState>) -> (FinalStatus, Option<(u64, Option<f64>, MapState)>) {
    (
        outcome.status.clone(),
        outcome
            .best
            .as_ref()
            .map(|b| (b.iteration, b.score, b.state.clone())),
    )
}

fn best(outcome: &Outcome<MapState>) -> (u64, Option<f64>) {
    let best = outcome.best.as_ref().expect("a best state");
    (best.iteration, best.score)
}

mod repeat {
    use super::*;

    #[tokio::test]
    async fn the_best_checkpoint_wins_and_iterations_run_in_order() {
        let host = ScriptedHost::new()
            .value(1, 10.0)
            .value(3, 50.0)
            .value(5, 20.0);
        let (outcome, events, candidates) = run_reading(
            &host,
            "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by value\nbody",
        )
        .await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(best(&outcome), (3, Some(50.0)));
        let state = &outcome.best.unwrap().state;
        assert_eq!(
            state["runs"], 4.0,
            "the best checkpoint is after 4 chained iterations"
        );
        assert_eq!(state["data"], 1.0, "the submitted state carries through");
        assert!(
            !state.contains_key("iteration"),
            "the iteration variable is removed"
        );
        let scores: Vec<(u64, Option<f64>)> =
            candidates.iter().map(|c| (c.iteration, c.score)).collect();
        assert_eq!(
            scores,
            vec![(1, Some(10.0)), (3, Some(50.0)), (5, Some(20.0))]
        );
        let order: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4, 5]);
        let checkpoints = events
            .iter()
            .filter(|e| matches!(e, Event::CheckpointCommitted { .. }))
            .count();
        assert_eq!(checkpoints, 3);
        assert!(matches!(
            events.last(),
            Some(Event::Finished {
                status: FinalStatus::Succeeded,
                ..
            })
        ));
        assert_eq!(outcome.usage.iterations_run, 6);
        assert!(outcome.usage.bytes_checkpointed > 0);
    }

    #[tokio::test]
    async fn a_failure_rewinds_to_the_last_checkpoint_and_retries() {
        let host = ScriptedHost::new().fail(3, 1);
        let (outcome, _) = run(
            &host,
            "#pragma repeat --iterations 4 --checkpoint-period 2 --max-by runs\nbody",
        )
        .await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        let order: Vec<(u64, u32)> = host
            .runs()
            .iter()
            .map(|r| (r.iteration, r.attempt))
            .collect();
        assert_eq!(order, vec![(0, 1), (1, 1), (2, 1), (3, 1), (2, 2), (3, 2)]);
        assert_eq!(
            outcome.best.unwrap().state["runs"],
            4.0,
            "the rewound run is not counted twice"
        );
    }

    #[tokio::test]
    async fn a_panic_in_the_host_fails_its_iteration_which_runs_again() {
        let host = ScriptedHost::new().panic(1, 1);
        let (outcome, _) = run(&host, "#pragma repeat --iterations 3 --max-by runs\nbody").await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        let order: Vec<(u64, u32)> = host
            .runs()
            .iter()
            .map(|r| (r.iteration, r.attempt))
            .collect();
        assert_eq!(order, vec![(0, 1), (1, 1), (1, 2), (2, 1)]);
    }

    #[tokio::test]
    async fn a_host_that_always_panics_fails_the_operation_with_its_message() {
        let host = ScriptedHost::new().panic(1, 10);
        let (outcome, _) = run(&host, "#pragma repeat --iterations 3 --max-by runs\nbody").await;
        assert_eq!(
            outcome.status,
            FinalStatus::Failed {
                reason: "iteration 1 failed after all its retries".into()
            }
        );
        assert_eq!(
            outcome.failed_iterations,
            vec![(
                1,
                "the host panicked running the body: iteration 1 panicked on purpose".to_string()
            )]
        );
    }

    #[tokio::test]
    async fn an_iteration_out_of_retries_fails_the_operation() {
        let host = ScriptedHost::new().fail(1, 10);
        let (outcome, _) = run(&host, "#pragma repeat --iterations 3 --max-by runs\nbody").await;
        assert_eq!(
            outcome.status,
            FinalStatus::Failed {
                reason: "iteration 1 failed after all its retries".into()
            }
        );
        assert!(outcome.best.is_none());
        assert_eq!(
            outcome.failed_iterations,
            vec![(1, "iteration 1 failed on purpose".to_string())]
        );
    }

    #[tokio::test]
    async fn an_iteration_out_of_preemptions_names_the_budget() {
        // Every worker is lost: iteration 0 runs once and is re-run twice.
        let backend = Arc::new(FaultyBackend::new(1, 0.0, 1).lose_every(1));
        let config = Config::default().workers(1).preemptions(2);
        let executor = Executor::with_backend(
            ScriptedHost::new(),
            MemoryStore::new(),
            backend.clone(),
            config,
        );
        let cell = "#pragma repeat --iterations 3 --max-by runs\nbody";
        let outcome = executor
            .submit(cell, MapState::new())
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
        assert_eq!(
            outcome.status,
            FinalStatus::Failed {
                reason: "iteration 0 was preempted too often: its worker was lost 3 times, \
                         the budget of preemptions (`Config::preemptions`)"
                    .into()
            }
        );
        assert_eq!(backend.lost(), 3);
    }
}

mod parallel {
    use super::*;

    #[tokio::test]
    async fn the_first_status_counts_the_iterations_and_the_workers_it_waits_for() {
        let host = ScriptedHost::new().delay(Duration::from_millis(100));
        let executor = executor(&host, 1);
        let handle = executor
            .submit(
                "#pragma parallel --iterations 4 --parallel-runs 2 --max-by value\nbody",
                MapState::new(),
            )
            .await
            .expect("submit");
        // Right after the submission, whatever the coordinator did yet.
        let status = handle.status();
        assert_eq!(status.schedule.progress().total, 4, "{status:?}");
        if let pragma_scheduler::Phase::Queued { reason, .. } = status.schedule {
            assert!(
                !matches!(reason, pragma_scheduler::WaitReason::CapacityZero),
                "{reason:?}"
            );
        }
        handle.cancel();
    }

    #[tokio::test]
    async fn many_operations_are_admitted_in_submission_order() {
        let host = ScriptedHost::new();
        let executor = executor(&host, 8);
        let cell = "#pragma parallel --iterations 10 --max-by value\nbody";
        let mut handles = Vec::new();
        for _ in 0..500 {
            handles.push(executor.submit(cell, MapState::new()).await.unwrap());
        }
        let ids: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
        for handle in handles {
            assert_eq!(handle.wait().await.unwrap().status, FinalStatus::Succeeded);
        }
        let mut firsts: Vec<String> = Vec::new();
        for run in host.runs() {
            if !firsts.contains(&run.op) {
                firsts.push(run.op);
            }
        }
        assert_eq!(
            firsts, ids,
            "each operation's first run, in order of submission"
        );
        assert_eq!(host.runs().len(), 5000);
    }

    #[tokio::test]
    async fn the_best_iteration_wins_from_its_own_copy_of_the_state() {
        let host = ScriptedHost::new().value(4, 99.0).value(6, 99.0);
        let (outcome, _, candidates) = run_reading(&host, "#pragma parallel --iterations 8 --parallel-runs 3 --iteration-var i --max-by value\nbody").await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(
            best(&outcome),
            (4, Some(99.0)),
            "a tie goes to the lower iteration"
        );
        let state = outcome.best.unwrap().state;
        assert_eq!(
            state["runs"], 1.0,
            "no state leaks between parallel iterations"
        );
        assert!(!state.contains_key("i"));
        assert_eq!(candidates.len(), 8);
    }

    #[tokio::test]
    async fn min_by_keeps_the_lowest_and_nan_is_never_chosen() {
        let host = ScriptedHost::new()
            .score(0, Evaluation::Score(f64::NAN))
            .value(2, -5.0);
        let (outcome, _, candidates) = run_reading(
            &host,
            "#pragma parallel --iterations 4 --min-by value\nbody",
        )
        .await;
        assert_eq!(best(&outcome), (2, Some(-5.0)));
        let nan = candidates.iter().find(|c| c.iteration == 0).unwrap();
        assert_eq!(nan.invalid.as_deref(), Some("the score is NaN"));
    }

    #[tokio::test]
    async fn no_valid_candidate_fails_the_operation() {
        let host = ScriptedHost::new();
        let (outcome, _) = run(
            &host,
            "#pragma parallel --iterations 2 --max-by missing\nbody",
        )
        .await;
        let FinalStatus::Failed { reason } = &outcome.status else {
            panic!("{:?}", outcome.status)
        };
        assert!(
            reason.starts_with("no valid result: all 2 candidates were invalid"),
            "{reason}"
        );
        assert!(outcome.best.is_none());
    }

    #[tokio::test]
    async fn failed_iterations_are_retried_then_reported() {
        let host = ScriptedHost::new().fail(1, 1).fail(2, 10);
        let (outcome, events) = run(
            &host,
            "#pragma parallel --iterations 4 --max-by value\nbody",
        )
        .await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(best(&outcome), (3, Some(3.0)));
        assert_eq!(
            outcome.failed_iterations,
            vec![(2, "iteration 2 failed on purpose".to_string())]
        );
        let failures = events
            .iter()
            .filter(|e| matches!(e, Event::IterationFailed { .. }))
            .count();
        assert_eq!(
            failures,
            1 + 3,
            "iteration 1 once, iteration 2 three times (2 retries)"
        );
        let seeds: Vec<u64> = host
            .runs()
            .iter()
            .filter(|r| r.iteration == 2)
            .map(|r| r.seed)
            .collect();
        assert!(
            seeds.windows(2).all(|w| w[0] == w[1]),
            "a retry gets the same seed"
        );
    }

    #[tokio::test]
    async fn async_runs_once_and_keeps_its_state() {
        let host = ScriptedHost::new().value(0, 7.0);
        let (outcome, _) = run(&host, "#pragma async\nbody").await;
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        let best = outcome.best.unwrap();
        assert_eq!(
            (best.iteration, best.score, best.state["value"]),
            (0, None, 7.0)
        );
        assert_eq!(host.runs().len(), 1);
    }
}

mod control {
    use super::*;

    #[tokio::test]
    async fn a_long_parallel_operation_ends_with_a_small_record() {
        let host = ScriptedHost::new().value(321, -5.0);
        let store = MemoryStore::new();
        let executor = Executor::new(
            host.clone(),
            store.clone(),
            config(4).record_interval(Duration::from_millis(1)),
        );
        let handle = executor
            .submit(
                "#pragma parallel --iterations 600 --parallel-runs 4 --min-by value\nbody",
                MapState::new(),
            )
            .await
            .unwrap();
        let op = handle.id().to_owned();
        let outcome = handle.wait().await.unwrap();
        assert_eq!(best(&outcome), (321, Some(-5.0)));

        // The final record builds on the chain: it does not list every
        // candidate (nor every finished iteration) again, and no record
        // lists candidates in its metadata.
        let checkpoints = executor.log().checkpoints(&op).await.unwrap();
        let last = checkpoints.last().unwrap();
        assert!(!last.meta()["base"].is_null(), "{}", last.meta());
        for manifest in &checkpoints {
            assert!(
                manifest.meta().get("candidates").is_none(),
                "{}",
                manifest.meta()
            );
            assert!(
                manifest.meta().to_string().len() < 2_000,
                "{}",
                manifest.meta()
            );
        }
        // And a new executor reads the whole story from the chain.
        let again = Executor::new(host, store, config(1));
        let summary = again.summary(&op).await.unwrap();
        assert_eq!(summary.status, Some(FinalStatus::Succeeded));
        assert_eq!((summary.done, summary.candidate_count), (600, 600));
        assert_eq!(summary.best.map(|b| b.iteration), Some(321));
        assert_eq!(
            candidate_iterations(&again, &op).await,
            (0..600).collect::<Vec<_>>()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_wait_while_too_many_finished_iterations_are_unrecorded() {
        // Records at most every 40 ms, and at most 5 finished iterations
        // may wait for one: the workers that finish more wait for it.
        let (cap, workers) = (5, 4);
        let host = ScriptedHost::new().value(77, 1e9);
        let executor = Executor::new(
            host.clone(),
            MemoryStore::new(),
            config(workers)
                .record_interval(Duration::from_millis(40))
                .max_unrecorded(cap),
        );
        let cell = "#pragma parallel --iterations 120 --parallel-runs 4 --max-by value\nbody";
        let handle = executor.submit(cell, MapState::new()).await.unwrap();
        let (outcome, events) = handle.wait_with_events().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(best(&outcome), (77, Some(1e9)));
        let mut unrecorded: i64 = 0;
        let mut most = 0;
        for event in &events {
            match event {
                Event::IterationFinished { .. } => unrecorded += 1,
                Event::CheckpointCommitted { recorded, .. } => unrecorded -= recorded.len() as i64,
                _ => {}
            }
            most = most.max(unrecorded);
        }
        assert_eq!(unrecorded, 0, "every finished iteration was recorded");
        assert!(
            most <= (cap + workers as usize) as i64,
            "at most {cap} waited, and one per worker that finished meanwhile: {most}"
        );
        // Nothing ran twice, and every iteration is a candidate once.
        assert_eq!(host.runs().len(), 120);
        assert_eq!(
            candidate_iterations(&executor, &outcome.op).await,
            (0..120).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_workers_keeps_the_checkpoint_and_applies_nothing() {
        let host = ScriptedHost::new().delay(Duration::from_millis(30));
        let executor = executor(&host, 2);
        let mut handle = executor
            .submit(
                "#pragma repeat --iterations 100 --max-by value\nbody",
                MapState::new(),
            )
            .await
            .unwrap();
        while let Some(event) = handle.next_event().await {
            if matches!(
                event,
                Event::CheckpointCommitted {
                    iterations_done: 2,
                    ..
                }
            ) {
                break;
            }
        }
        let op = handle.id().to_owned();
        handle.cancel();
        let outcome = handle.wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Cancelled);
        // Its best so far is handed back: a checkpoint's.
        let best = outcome.best.expect("the best so far");
        assert!(best.iteration >= 1, "{}", best.iteration);
        let runs = host.runs().len();
        assert!(runs < 10, "workers stopped promptly: {runs} runs");
        let checkpoints = executor.log().checkpoints(&op).await.unwrap();
        assert!(
            checkpoints.len() >= 2,
            "the submission and the last checkpoint are kept"
        );
        assert!(
            executor.unfinished().await.unwrap().is_empty(),
            "a cancelled operation is not resumed by itself"
        );
    }

    #[tokio::test]
    async fn interactive_input_interrupts_naming_the_iteration() {
        let host = ScriptedHost::new().interactive(2);
        let (outcome, events) = run(
            &host,
            "#pragma parallel --iterations 5 --parallel-runs 1 --max-by value\nbody",
        )
        .await;
        assert_eq!(
            outcome.status,
            FinalStatus::Interrupted {
                iteration: 2,
                message: "input() was called".into()
            }
        );
        assert!(outcome.best.is_none(), "nothing is applied");
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Interrupted { iteration: 2, .. }))
        );
        assert!(
            host.runs().iter().all(|r| r.iteration <= 2),
            "nothing starts after the interruption"
        );
    }

    #[tokio::test]
    async fn unsaveable_variables_are_named_before_the_run() {
        let host = ScriptedHost::new().unsaveable(&["socket", "log_file"]);
        let err = executor(&host, 1)
            .submit("#pragma async\nbody", MapState::new())
            .await
            .err()
            .expect("an error");
        assert!(matches!(err, ExecError::Unsaveable(_)));
        assert_eq!(
            err.to_string(),
            "cannot run in the background: these variables cannot be saved: socket, log_file; remove them or recreate them in the cell"
        );
        assert!(host.runs().is_empty());
    }

    #[tokio::test]
    async fn a_bad_directive_is_refused_with_its_position() {
        let err = executor(&ScriptedHost::new(), 1)
            .submit(
                "#pragma repeat --iteratons 3 --max-by x\nbody",
                MapState::new(),
            )
            .await
            .err()
            .expect("an error");
        assert_eq!(
            err.to_string(),
            "invalid directive: 1:16: unknown option `--iteratons`"
        );
    }

    #[tokio::test]
    async fn operations_queue_for_workers_and_report_status() {
        let host = ScriptedHost::new().delay(Duration::from_millis(20));
        let executor = executor(&host, 1);
        let first = executor
            .submit(
                "#pragma parallel --iterations 3 --max-by value\nbody",
                MapState::new(),
            )
            .await
            .unwrap();
        let mut second = executor
            .submit("#pragma async\nbody", MapState::new())
            .await
            .unwrap();
        let queued = second.next_event().await;
        assert!(matches!(queued, Some(Event::Queued { .. })), "{queued:?}");
        let Some(Event::Queued { reason, .. }) = queued else {
            unreachable!()
        };
        // The first would take more workers if there were any.
        assert_eq!(
            reason,
            "waiting for 1 of 1 workers (1 earlier operations first)"
        );
        assert!(matches!(
            second.status().schedule,
            pragma_scheduler::Phase::Queued { .. }
        ));
        first.wait().await.unwrap();
        assert_eq!(second.wait().await.unwrap().status, FinalStatus::Succeeded);
    }

    #[tokio::test]
    async fn events_serialise_to_json() {
        let host = ScriptedHost::new();
        let (_, events) = run(
            &host,
            "#pragma parallel --iterations 2 --max-by value\nbody",
        )
        .await;
        let json: Vec<String> = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        assert!(
            json[0].starts_with(r#"{"event":"started","op":"op-"#),
            "{}",
            json[0]
        );
        assert!(
            json.last()
                .unwrap()
                .contains(r#""status":{"status":"succeeded"}"#),
            "{}",
            json.last().unwrap()
        );
        for line in &json {
            let back: Event = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), *line);
        }
    }
}

mod conflicts {
    use std::collections::BTreeMap;

    use pragma_executor_local::conflict::{Resolution, Rule, compare};

    fn map(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn changes_on_one_side_apply_and_changes_on_both_conflict() {
        let submitted = map(&[("model", 1), ("data", 1), ("notes", 1), ("gone", 1)]);
        let live = map(&[
            ("model", 1),
            ("data", 2),
            ("notes", 5),
            ("gone", 1),
            ("new_live", 1),
        ]);
        let result = map(&[("model", 9), ("data", 1), ("notes", 7), ("made", 3)]);
        let comparison = compare(&submitted, &live, &result);
        assert_eq!(
            comparison.apply,
            BTreeMap::from([
                ("gone".to_string(), None),
                ("made".to_string(), Some(3)),
                ("model".to_string(), Some(9)),
            ])
        );
        assert_eq!(comparison.conflicts.keys().collect::<Vec<_>>(), ["notes"]);
        let err = comparison
            .resolve(&BTreeMap::new(), Rule::Fail)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unresolved conflicts in notes: choose for each variable to take the background value or keep the live one"
        );
        let choices = BTreeMap::from([("notes".to_string(), Resolution::TakeBackground)]);
        let changes = comparison.resolve(&choices, Rule::Fail).unwrap();
        assert_eq!(changes["notes"], Some(7));
        let kept = comparison
            .resolve(&BTreeMap::new(), Rule::KeepLive)
            .unwrap();
        assert!(!kept.contains_key("notes"));
    }

    #[test]
    fn the_same_change_on_both_sides_is_no_conflict() {
        let submitted = map(&[("x", 1)]);
        let both = map(&[("x", 2)]);
        let comparison = compare(&submitted, &both, &both);
        assert!(comparison.conflicts.is_empty() && comparison.apply.is_empty());
    }
}

mod resume {
    use super::*;

    mod full_store {
        use std::sync::atomic::{AtomicBool, Ordering};

        use async_trait::async_trait;
        use pragma_checkpoint::{Key, Reader, Source, Store};

        use super::*;

        /// A store that is full while `full` is set.
        #[derive(Debug, Clone, Default)]
        struct FillingStore {
            inner: MemoryStore,
            full: Arc<AtomicBool>,
        }

        impl FillingStore {
            fn refuse(&self) -> pragma_checkpoint::Result<()> {
                if self.full.load(Ordering::SeqCst) {
                    return Err(pragma_checkpoint::Error::io(
                        "writing a checkpoint",
                        std::io::Error::from(std::io::ErrorKind::StorageFull),
                    ));
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Store for FillingStore {
            async fn put(&self, key: &Key, data: Source<'_>) -> pragma_checkpoint::Result<u64> {
                self.refuse()?;
                self.inner.put(key, data).await
            }
            async fn create(&self, key: &Key, data: &[u8]) -> pragma_checkpoint::Result<()> {
                self.refuse()?;
                self.inner.create(key, data).await
            }
            async fn get(&self, key: &Key) -> pragma_checkpoint::Result<Reader> {
                self.inner.get(key).await
            }
            async fn delete(&self, key: &Key) -> pragma_checkpoint::Result<()> {
                self.inner.delete(key).await
            }
            async fn list(&self, prefix: Option<&Key>) -> pragma_checkpoint::Result<Vec<Key>> {
                self.inner.list(prefix).await
            }
        }

        #[tokio::test]
        async fn a_full_store_stops_the_operation_and_a_resume_finishes_it() {
            for cell in [
                "#pragma repeat --iterations 8 --checkpoint-period 1 --max-by value\nbody",
                "#pragma parallel --iterations 12 --parallel-runs 2 --max-by value\nbody",
            ] {
                let script = || {
                    ScriptedHost::new()
                        .delay(Duration::from_millis(5))
                        .value(5, 50.0)
                };
                let (direct, _) = run(&script(), cell).await;
                let store = FillingStore::default();
                let host = script();
                let executor = Executor::new(host.clone(), store.clone(), config(2));
                let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
                let op = handle.id().to_owned();
                let mut commits = 0;
                while let Some(event) = handle.next_event().await {
                    if matches!(event, Event::CheckpointCommitted { .. }) {
                        commits += 1;
                        if commits == 2 {
                            store.full.store(true, Ordering::SeqCst);
                            break;
                        }
                    }
                }
                let outcome = handle.wait().await.unwrap();
                assert!(
                    matches!(&outcome.status, FinalStatus::Stopped { reason } if reason.contains("no space left")),
                    "{cell}: {:?}",
                    outcome.status
                );
                assert!(outcome.best.is_none(), "{cell}: nothing is handed back");
                // No final record: the store holds the operation as a crash
                // leaves it, so that it goes on.
                assert_eq!(
                    executor.unfinished().await.unwrap(),
                    vec![op.clone()],
                    "{cell}"
                );
                drop(executor);

                store.full.store(false, Ordering::SeqCst);
                let executor = Executor::new(host.clone(), store.clone(), config(2));
                let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
                assert_eq!(outcome.status, FinalStatus::Succeeded, "{cell}");
                assert_eq!(best(&outcome), best(&direct), "{cell}");
                assert_eq!(outcome.best.unwrap().state["value"], 50.0, "{cell}");
            }
        }
    }

    #[tokio::test]
    async fn a_prepared_operation_runs_where_it_is_resumed_as_a_submitted_one_would() {
        for cell in [
            "#pragma repeat --iterations 5 --checkpoint-period 2 --max-by value\nbody",
            "#pragma parallel --iterations 6 --parallel-runs 2 --max-by value\nbody",
        ] {
            let host = ScriptedHost::new().value(3, 30.0);
            let (direct, _) = run(&host, cell).await;
            let store = MemoryStore::new();
            let host = ScriptedHost::new().value(3, 30.0);
            let parsed = pragma_parse::parse_cell(cell).unwrap();
            let state = MapState::from([("data".to_string(), 1.0)]);
            let op = Executor::new(host.clone(), store.clone(), config(3))
                .prepare(parsed.directive, parsed.body, state)
                .await
                .unwrap();
            assert!(
                host.runs().is_empty(),
                "{cell}: nothing runs at preparation"
            );
            let elsewhere = Executor::new(host.clone(), store, config(3));
            assert_eq!(elsewhere.unfinished().await.unwrap(), vec![op.clone()]);
            let outcome = elsewhere.resume(&op).await.unwrap().wait().await.unwrap();
            assert_eq!(outcome.status, FinalStatus::Succeeded, "{cell}");
            assert_eq!(best(&outcome), best(&direct), "{cell}");
            assert_eq!(
                outcome.best.unwrap().state,
                direct.best.unwrap().state,
                "{cell}"
            );
            assert_eq!(
                outcome.usage.iterations_run, direct.usage.iterations_run,
                "{cell}"
            );
        }
    }

    #[tokio::test]
    async fn a_new_executor_resumes_from_the_last_checkpoint_after_a_crash() {
        let store = MemoryStore::new();
        let host = ScriptedHost::new()
            .delay(Duration::from_millis(5))
            .value(5, 50.0);
        let cell = "#pragma repeat --iterations 8 --checkpoint-period 2 --max-by value\nbody";
        let op = {
            let executor = Executor::new(host.clone(), store.clone(), config(1));
            let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
            while let Some(event) = handle.next_event().await {
                if matches!(
                    event,
                    Event::CheckpointCommitted {
                        iterations_done: 4,
                        ..
                    }
                ) {
                    break;
                }
            }
            handle.id().to_owned()
            // The executor is dropped here: a crash.
        };
        let executor = Executor::new(host.clone(), store.clone(), config(1));
        assert_eq!(executor.unfinished().await.unwrap(), vec![op.clone()]);
        let (outcome, events) = executor
            .resume(&op)
            .await
            .unwrap()
            .wait_with_events()
            .await
            .unwrap();
        assert!(
            matches!(
                events[0],
                Event::Resumed {
                    iterations_done: 4,
                    ..
                }
            ),
            "{:?}",
            events[0]
        );
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(best(&outcome), (5, Some(50.0)));
        assert_eq!(outcome.best.unwrap().state["runs"], 6.0);
        let after: Vec<u64> = host
            .runs()
            .iter()
            .skip_while(|r| r.iteration < 7)
            .map(|r| r.iteration)
            .collect();
        assert!(!after.is_empty());
        let resumed_runs: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::IterationStarted { iteration, .. } => Some(*iteration),
                _ => None,
            })
            .collect();
        assert_eq!(
            resumed_runs,
            vec![4, 5, 6, 7],
            "checkpointed iterations do not run again"
        );
        assert!(executor.unfinished().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn iterations_running_at_a_crash_come_back_as_their_next_start() {
        let store = MemoryStore::new();
        let host = ScriptedHost::new();
        let cell = "#pragma parallel --iterations 8 --parallel-runs 2 --max-by value\nbody";
        // Two jobs finish; the next two never do (the crash), and the
        // group commits meanwhile record them as running.
        let backend = Arc::new(FaultyBackend::new(2, 0.0, 1).crash_after(2));
        let executor =
            Executor::with_backend(host.clone(), store.clone(), backend.clone(), config(2));
        let handle = executor.submit(cell, MapState::new()).await.unwrap();
        let op = handle.id().to_owned();
        backend.crashed().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop((handle, executor));
        let crashed: Vec<u64> = (0..8)
            .filter(|i| !host.runs().iter().any(|r| r.iteration == *i))
            .take(2)
            .collect();

        let executor = Executor::new(host.clone(), store, config(2));
        let (outcome, events) = executor
            .resume(&op)
            .await
            .unwrap()
            .wait_with_events()
            .await
            .unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        let started: Vec<(u64, u32)> = events
            .iter()
            .filter_map(|e| match e {
                Event::IterationStarted {
                    iteration, attempt, ..
                } => Some((*iteration, *attempt)),
                _ => None,
            })
            .collect();
        for iteration in crashed {
            assert!(
                started.contains(&(iteration, 2)),
                "iteration {iteration} ran before the crash: {started:?}"
            );
            let run = host.runs().into_iter().find(|r| r.iteration == iteration);
            assert_eq!(run.map(|r| r.attempt), Some(2), "what the host is told");
        }
        assert!(
            started.iter().filter(|(_, attempt)| *attempt == 1).count() >= 4,
            "iterations that never ran start as their first: {started:?}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_repeat_resumes_from_its_last_checkpoint() {
        let host = ScriptedHost::new().delay(Duration::from_millis(5));
        let executor = executor(&host, 1);
        let cell = "#pragma repeat --iterations 6 --checkpoint-period 1 --max-by value\nbody";
        let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
        while let Some(event) = handle.next_event().await {
            if matches!(
                event,
                Event::CheckpointCommitted {
                    iterations_done: 3,
                    ..
                }
            ) {
                break;
            }
        }
        let op = handle.id().to_owned();
        handle.cancel();
        assert_eq!(handle.wait().await.unwrap().status, FinalStatus::Cancelled);

        // The final record of the cancel holds no state; the checkpoint
        // before it does.
        let (outcome, events) = executor
            .resume(&op)
            .await
            .unwrap()
            .wait_with_events()
            .await
            .unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded, "{events:?}");
        let Some(Event::Resumed {
            iterations_done, ..
        }) = events.first()
        else {
            panic!("{events:?}");
        };
        assert!(*iterations_done >= 3, "{events:?}");
        // Every iteration adds one run to the state: six in all, none lost.
        assert_eq!(outcome.best.unwrap().state["runs"], 6.0);
    }

    #[tokio::test]
    async fn an_unknown_operation_cannot_be_resumed() {
        let executor = executor(&ScriptedHost::new(), 1);
        let err = executor.resume("op-nope").await.err().expect("an error");
        assert!(matches!(&err, ExecError::UnknownOperation { op } if op == "op-nope"));
        assert_eq!(
            err.to_string(),
            "operation `op-nope`: there is no such operation in the store"
        );
    }
}

#[tokio::test]
async fn lost_workers_rerun_their_iterations_and_usage_counts_them() {
    let host = ScriptedHost::new();
    let backend = Arc::new(FaultyBackend::new(2, 0.4, 11));
    let executor =
        Executor::with_backend(host.clone(), MemoryStore::new(), backend.clone(), config(2));
    let outcome = executor
        .submit(
            "#pragma parallel --iterations 10 --max-by value\nbody",
            MapState::new(),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(best(&outcome), (9, Some(9.0)));
    assert!(backend.lost() > 0);
    assert_eq!(outcome.usage.work_lost, backend.lost());
    assert_eq!(outcome.usage.iterations_run, 10 + backend.lost());
}

/// A backend that runs jobs "elsewhere": from their specs alone, with a
/// host of its own, through the store, as a cluster backend does.
mod remote {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use pragma_checkpoint::{CheckpointLog, Key, Store};
    use pragma_executor_local::{
        ExecutionBackend, Job, JobOutcome, RemoteOutput, RemoteReport, RemoteState, ReportError,
        RunError, load_input, run_spec, run_spec_returning,
    };
    use pragma_scheduler::WorkerId;

    use super::*;

    struct Elsewhere {
        log: CheckpointLog<MemoryStore>,
        host: ScriptedHost,
        /// Whether results come back as bytes (else through the store).
        returning: bool,
        /// The (iteration, attempt) of every job run from its spec.
        ran: Mutex<Vec<(u64, u32)>>,
    }

    #[async_trait]
    impl ExecutionBackend for Elsewhere {
        fn capacity(&self) -> u64 {
            3
        }

        async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
            if job.spec().input.is_none() {
                return job.run_here().await;
            }
            let spec = job.into_spec();
            self.ran
                .lock()
                .unwrap()
                .push((spec.iteration, spec.attempt));
            let key = Key::parse(&format!(
                "remote/{}/{}-{}",
                spec.op, spec.iteration, spec.attempt
            ))
            .unwrap();
            let mut output = if self.returning {
                let input = load_input(&self.host, &self.log, &spec)
                    .await
                    .map_err(RunError::from);
                run_spec_returning(&self.host, input, &spec).await
            } else {
                run_spec(&self.host, &self.log, &spec, &key).await
            };
            if spec.iteration == 3 {
                // As if the cluster had cut a first run of it short.
                output.lost_runs = 1;
            }
            // Across processes the output travels as JSON, and the
            // returned state's bytes beside it.
            let bytes = match &mut output.result {
                Ok(RemoteState::Returned(bytes)) => Some(std::mem::take(bytes)),
                _ => None,
            };
            assert_eq!(bytes.is_some(), self.returning && output.result.is_ok());
            let json = serde_json::to_string(&RemoteReport::from(&output)).unwrap();
            let report: RemoteReport = serde_json::from_str(&json).unwrap();
            JobOutcome::Remote(report.into_output(bytes).unwrap())
        }
    }

    #[tokio::test]
    async fn jobs_run_from_their_specs_give_the_same_outcome() {
        same_outcome_elsewhere(false).await;
    }

    #[tokio::test]
    async fn jobs_whose_results_come_back_as_bytes_give_the_same_outcome() {
        same_outcome_elsewhere(true).await;
    }

    /// A report and bytes that do not go together are refused.
    #[test]
    fn a_report_and_its_returned_state_must_agree() {
        let returned = RemoteOutput {
            result: Ok(RemoteState::Returned(b"{}".to_vec())),
            evaluation: None,
            seconds: 0.0,
            lost_runs: 0,
        };
        let report = RemoteReport::from(&returned);
        assert!(report.returned && report.state.is_none());
        let error = report.clone().into_output(None).unwrap_err();
        assert_eq!(error, ReportError::ReturnedMissing, "{error}");
        assert!(RemoteOutput::try_from(report.clone()).is_err());
        let back = report.into_output(Some(b"{}".to_vec())).unwrap();
        assert_eq!(back.result.unwrap(), RemoteState::Returned(b"{}".to_vec()));
        let stored = RemoteOutput {
            result: Ok(RemoteState::Stored(Key::parse("remote/op/1-1").unwrap())),
            ..returned
        };
        let error = RemoteReport::from(&stored)
            .into_output(Some(Vec::new()))
            .unwrap_err();
        assert_eq!(error, ReportError::StoredAndReturned, "{error}");
    }

    async fn same_outcome_elsewhere(returning: bool) {
        let cell = "#pragma parallel --iterations 12 --parallel-runs 3 --max-by value\nbody";
        let scripted = || {
            // (No NaN: a state holding one cannot be snapshotted as JSON,
            // and every remote result is.)
            ScriptedHost::new().value(4, 40.0).value(7, -3.0).fail(9, 1)
        };
        let (local, _, local_candidates) = run_reading(&scripted(), cell).await;

        let store = MemoryStore::new();
        let backend = Arc::new(Elsewhere {
            log: CheckpointLog::new(store.clone()),
            host: scripted(),
            returning,
            ran: Mutex::new(Vec::new()),
        });
        let here = ScriptedHost::new();
        let executor = Executor::with_backend(
            here.clone(),
            store.clone(),
            Arc::clone(&backend) as Arc<dyn ExecutionBackend>,
            config(3),
        );
        let state = MapState::from([("data".to_string(), 1.0)]);
        let outcome = executor
            .submit(cell, state)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();

        assert_eq!(outcome.status, local.status);
        assert_eq!(best(&outcome), best(&local));
        assert_eq!(
            outcome.best.as_ref().unwrap().state,
            local.best.as_ref().unwrap().state
        );
        let sorted = |candidates: Vec<CandidateScore>| {
            let mut candidates: Vec<_> = candidates
                .into_iter()
                .map(|c| (c.iteration, c.score.map(f64::to_bits), c.invalid))
                .collect();
            candidates.sort();
            candidates
        };
        let candidates = executor.candidates(&outcome.op).await.unwrap();
        assert_eq!(
            sorted(candidates.collect().await.unwrap()),
            sorted(local_candidates)
        );
        assert!(
            here.runs().is_empty(),
            "nothing ran in the executor's process"
        );
        // The run lost elsewhere counts as a run and as lost work.
        assert_eq!(outcome.usage.iterations_run, local.usage.iterations_run + 1);
        assert_eq!(outcome.usage.work_lost, local.usage.work_lost + 1);
        let mut ran = backend.ran.lock().unwrap().clone();
        ran.sort_unstable();
        assert!(
            ran.contains(&(9, 2)),
            "the failed iteration was retried: {ran:?}"
        );
        assert_eq!(ran.len(), 13);
        // The results' copies in the store are gone once restored.
        let left = store
            .list(Some(&Key::parse("remote").unwrap()))
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
}

/// A backend whose capacity changes while an operation runs (a cluster
/// that grows, then shrinks).
mod changing_capacity {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use pragma_executor_local::{ExecutionBackend, Job, JobOutcome};
    use pragma_scheduler::WorkerId;

    use super::*;

    #[derive(Default)]
    struct Resizable {
        capacity: AtomicU64,
        running: AtomicU64,
        /// The most jobs running at once.
        peak: AtomicU64,
        started: AtomicU64,
    }

    #[async_trait]
    impl ExecutionBackend for Resizable {
        fn capacity(&self) -> u64 {
            self.capacity.load(Ordering::SeqCst)
        }

        async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.started.fetch_add(1, Ordering::SeqCst);
            self.peak.fetch_max(running, Ordering::SeqCst);
            let outcome = job.run_here().await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            outcome
        }
    }

    #[tokio::test]
    async fn an_operation_grows_onto_capacity_that_comes_and_shrinks_from_what_goes() {
        let host = ScriptedHost::new().delay(Duration::from_millis(50));
        let backend = Arc::new(Resizable::default());
        backend.capacity.store(1, Ordering::SeqCst);
        let executor = Executor::with_backend(
            host.clone(),
            MemoryStore::new(),
            Arc::clone(&backend) as Arc<dyn ExecutionBackend>,
            config(1),
        );
        // No --parallel-runs: as many at once as the backend has room for.
        let cell = "#pragma parallel --iterations 300 --max-by value\nbody";
        let handle = executor.submit(cell, MapState::new()).await.unwrap();
        // One at a time, then four once the capacity grew (it is read
        // again every second), then at most two once it shrank and the
        // jobs started before drained.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(backend.peak.load(Ordering::SeqCst), 1);
        backend.capacity.store(4, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(backend.peak.load(Ordering::SeqCst), 4);
        backend.capacity.store(2, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        backend
            .peak
            .store(backend.running.load(Ordering::SeqCst), Ordering::SeqCst);
        let started = backend.started.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            backend.started.load(Ordering::SeqCst) > started,
            "jobs go on starting"
        );
        assert!(
            backend.peak.load(Ordering::SeqCst) <= 2,
            "at most two at once now"
        );
        let outcome = handle.wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(host.runs().len(), 300);
    }
}

mod batching {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use pragma_executor_local::{ExecutionBackend, Job, JobOutcome};
    use pragma_scheduler::WorkerId;
    use tokio::sync::Semaphore;

    use super::*;

    /// Takes `batch` jobs per slot of its capacity of 2, and runs at most
    /// `runs` (up to 2) at once, as a batching backend must.
    struct Batching {
        batch: u64,
        runs: Semaphore,
        in_hand: AtomicU64,
        /// The most jobs in its hands at once.
        peak: AtomicU64,
        runs_at_once: Mutex<Vec<Option<u64>>>,
    }

    impl Batching {
        fn new(batch: u64, runs: usize) -> Batching {
            Batching {
                batch,
                runs: Semaphore::new(runs),
                in_hand: AtomicU64::new(0),
                peak: AtomicU64::new(0),
                runs_at_once: Mutex::default(),
            }
        }
    }

    #[async_trait]
    impl ExecutionBackend for Batching {
        fn capacity(&self) -> u64 {
            2
        }

        fn batch(&self) -> u64 {
            self.batch
        }

        async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
            let in_hand = self.in_hand.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(in_hand, Ordering::SeqCst);
            self.runs_at_once
                .lock()
                .unwrap()
                .push(job.spec().runs_at_once);
            let outcome = {
                let _run = self.runs.acquire().await.unwrap();
                job.run_here().await
            };
            self.in_hand.fetch_sub(1, Ordering::SeqCst);
            outcome
        }
    }

    async fn run(backend: &Arc<Batching>, cell: &str, iterations: usize) {
        let host = ScriptedHost::new().delay(Duration::from_millis(5));
        let executor = Executor::with_backend(
            host.clone(),
            MemoryStore::new(),
            Arc::clone(backend) as Arc<dyn ExecutionBackend>,
            config(2),
        );
        let handle = executor.submit(cell, MapState::new()).await.unwrap();
        let outcome = handle.wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(host.runs().len(), iterations);
    }

    #[tokio::test]
    async fn a_backend_that_batches_is_handed_a_batch_per_run_and_told_the_runs() {
        let backend = Arc::new(Batching::new(4, 1));
        let cell = "#pragma parallel --iterations 40 --parallel-runs 1 --max-by value\nbody";
        run(&backend, cell, 40).await;
        // One run at a time: a batch of 4 in its hands, never more.
        assert_eq!(backend.peak.load(Ordering::SeqCst), 4);
        let told = backend.runs_at_once.lock().unwrap().clone();
        assert!(told.iter().all(|runs| *runs == Some(1)), "{told:?}");

        // Without --parallel-runs: a batch per slot of its capacity.
        let backend = Arc::new(Batching::new(4, 2));
        let cell = "#pragma parallel --iterations 40 --max-by value\nbody";
        run(&backend, cell, 40).await;
        assert_eq!(backend.peak.load(Ordering::SeqCst), 8);
        let told = backend.runs_at_once.lock().unwrap().clone();
        assert!(told.iter().all(Option::is_none), "{told:?}");
    }

    #[tokio::test]
    async fn what_is_said_in_flight_never_exceeds_what_may_run() {
        // 4 jobs in the backend's hands, one of them running: the status
        // says 1 in flight, as `--parallel-runs 1` lets run.
        let backend = Arc::new(Batching::new(4, 1));
        let host = ScriptedHost::new().delay(Duration::from_millis(5));
        let executor = Executor::with_backend(
            host,
            MemoryStore::new(),
            Arc::clone(&backend) as Arc<dyn ExecutionBackend>,
            config(2),
        );
        let cell = "#pragma parallel --iterations 40 --parallel-runs 1 --max-by value\nbody";
        let handle = executor.submit(cell, MapState::new()).await.unwrap();
        let (mut most, mut in_hand) = (0, 0);
        while !matches!(
            handle.status().schedule,
            pragma_scheduler::Phase::Ended { .. }
        ) {
            most = most.max(handle.status().schedule.progress().in_flight);
            in_hand = in_hand.max(backend.in_hand.load(Ordering::SeqCst));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(in_hand, 4, "the backend was never handed a whole batch");
        assert_eq!(most, 1);
    }

    #[tokio::test]
    async fn a_backend_that_does_not_batch_is_handed_a_job_per_run() {
        let backend = Arc::new(Batching::new(1, 2));
        let cell = "#pragma parallel --iterations 40 --parallel-runs 2 --max-by value\nbody";
        run(&backend, cell, 40).await;
        assert_eq!(backend.peak.load(Ordering::SeqCst), 2);
        let told = backend.runs_at_once.lock().unwrap().clone();
        assert!(told.iter().all(|runs| *runs == Some(2)), "{told:?}");
    }

    #[tokio::test]
    async fn after_a_crash_only_the_runs_that_may_have_been_running_count_as_lost() {
        let store = MemoryStore::new();
        let host = ScriptedHost::new().delay(Duration::from_millis(20));
        let cell = "#pragma parallel --iterations 40 --parallel-runs 1 --max-by value\nbody";
        let op = {
            let backend = Arc::new(Batching::new(4, 1));
            let executor = Executor::with_backend(
                host.clone(),
                store.clone(),
                Arc::clone(&backend) as Arc<dyn ExecutionBackend>,
                config(2),
            );
            let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
            let mut finished = 0;
            while let Some(event) = handle.next_event().await {
                if matches!(event, Event::IterationFinished { .. }) {
                    finished += 1;
                    if finished == 10 {
                        break;
                    }
                }
            }
            // Recorded meanwhile (every 2 ms), with 4 jobs in the
            // backend's hands and one of them running.
            tokio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(backend.in_hand.load(Ordering::SeqCst), 4);
            handle.id().to_owned()
            // The executor is dropped here: a crash.
        };
        let executor = Executor::new(host.clone(), store.clone(), config(1));
        let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        // The job running at the crash, not the 3 waiting behind it.
        assert!(outcome.usage.work_lost <= 1, "{:?}", outcome.usage);
    }
}

/// A panic in a host or a backend is a failed iteration, never a hang.
mod panics {
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use pragma_executor_local::{ExecutionBackend, Job, JobOutcome};
    use pragma_scheduler::WorkerId;

    use super::*;

    /// Runs jobs here, but panics on its first.
    struct PanicsOnce(AtomicU64);

    #[async_trait]
    impl ExecutionBackend for PanicsOnce {
        fn capacity(&self) -> u64 {
            2
        }

        async fn execute(&self, _worker: WorkerId, job: Job) -> JobOutcome {
            if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("the backend broke");
            }
            job.run_here().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_backend_fails_the_iteration_which_runs_again() {
        let host = ScriptedHost::new();
        let backend = Arc::new(PanicsOnce(AtomicU64::new(0)));
        let executor = Executor::with_backend(host, MemoryStore::new(), backend, config(2));
        let handle = executor
            .submit(
                "#pragma parallel --iterations 4 --max-by value\nbody",
                MapState::new(),
            )
            .await
            .expect("submit");
        let (outcome, events) = handle.wait_with_events().await.expect("an outcome");
        assert_eq!(outcome.status, FinalStatus::Succeeded);
        assert_eq!(best(&outcome), (3, Some(3.0)));
        assert!(outcome.failed_iterations.is_empty());
        assert!(
            events.iter().any(|e| matches!(e, Event::Retrying { .. })),
            "{events:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_host_panicking_on_a_multi_thread_runtime_fails_the_iteration() {
        let host = ScriptedHost::new().panic(2, 10);
        let executor = executor(&host, 2);
        let handle = executor
            .submit(
                "#pragma parallel --iterations 4 --max-by value\nbody",
                MapState::new(),
            )
            .await
            .expect("submit");
        let outcome = handle.wait().await.expect("an outcome");
        assert_eq!(
            outcome.failed_iterations,
            vec![(
                2,
                "the host panicked running the body: iteration 2 panicked on purpose".to_string()
            )]
        );
    }

    #[test]
    #[should_panic(expected = "must be made inside a tokio runtime")]
    fn an_executor_made_outside_a_runtime_says_how_to_make_one() {
        let _ = Executor::new(ScriptedHost::new(), MemoryStore::new(), config(1));
    }
}
