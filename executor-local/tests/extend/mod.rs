//! [`Executor::extend`]: more iterations of an operation that succeeded.

use super::*;

/// The outcome of a submitted or extended operation, once it ended.
async fn ended(
    handle: Result<pragma_executor_local::Handle<MapState>, ExecError>,
) -> Outcome<MapState> {
    handle.expect("submitted").wait().await.expect("an outcome")
}

#[tokio::test]
async fn a_repeat_goes_on_from_its_last_state_and_its_earlier_candidates_still_count() {
    // The best of the first 6 is iteration 1; of the 4 more, iteration 9.
    let host = ScriptedHost::new().value(1, 100.0).value(9, 200.0);
    let executor = executor(&host, 2);
    let cell = "#pragma repeat --iterations 6 --checkpoint-period 2 --max-by value\nbody";
    let first = ended(executor.submit(cell, MapState::new()).await).await;
    assert_eq!(best(&first), (1, Some(100.0)));
    let more = ended(executor.extend(&first.op, 4).await).await;
    assert_eq!(more.status, FinalStatus::Succeeded);
    assert_eq!(more.op, first.op);
    assert_eq!(best(&more), (9, Some(200.0)));
    // From the last state (6 runs chained), not the best (2): 10 runs.
    assert_eq!(more.best.as_ref().unwrap().state["runs"], 10.0);
    let order: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    assert_eq!(
        candidate_iterations(&executor, &more.op).await,
        vec![1, 3, 5, 7, 9]
    );
    assert_eq!(more.usage.iterations_run, 10, "usage adds up");
    let summary = executor.summary(&more.op).await.unwrap();
    assert_eq!((summary.iterations, summary.done), (10, 10));
    assert!(summary.directive.to_string().contains("--iterations 10 "));
}

#[tokio::test]
async fn a_parallel_operation_runs_only_the_new_iterations() {
    let host = ScriptedHost::new().value(2, 50.0);
    let executor = executor(&host, 3);
    let cell = "#pragma parallel --iterations 5 --max-by value\nbody";
    let first = ended(executor.submit(cell, MapState::new()).await).await;
    let more = ended(executor.extend(&first.op, 3).await).await;
    assert_eq!(more.status, FinalStatus::Succeeded);
    assert_eq!(
        best(&more),
        (2, Some(50.0)),
        "an earlier candidate can stay the best"
    );
    let mut ran: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
    ran.sort_unstable();
    assert_eq!(ran, (0..8).collect::<Vec<_>>(), "each once");
    assert_eq!(more.candidate_count, 8);
    assert_eq!(more.usage.iterations_run, 8);
}

#[tokio::test]
async fn only_an_operation_that_succeeded_is_extended_and_a_refusal_says_what_to_do() {
    let host = ScriptedHost::new()
        .fail(0, 10)
        .delay(Duration::from_millis(20));
    let executor = executor(&host, 1);
    let cell = "#pragma repeat --iterations 2 --max-by value\nbody";
    let failed = ended(executor.submit(cell, MapState::new()).await).await;
    assert!(matches!(failed.status, FinalStatus::Failed { .. }));
    let Err(refused) = executor.extend(&failed.op, 2).await else {
        panic!("a failed operation was extended")
    };
    assert!(
        refused.to_string().ends_with("start it again instead"),
        "{refused}"
    );

    let handle = executor
        .submit(
            "#pragma parallel --iterations 50 --max-by value\nbody",
            MapState::new(),
        )
        .await
        .unwrap();
    let op = handle.id().to_owned();
    handle.cancel();
    let cancelled = handle.wait().await.unwrap();
    assert_eq!(cancelled.status, FinalStatus::Cancelled);
    let Err(refused) = executor.extend(&op, 2).await else {
        panic!("a cancelled operation was extended")
    };
    assert!(refused.to_string().contains("resume it"), "{refused}");
    assert!(matches!(refused, ExecError::NotExtendable { .. }));
    assert!(matches!(
        executor
            .extend("op-00000000000000000000000000000000", 1)
            .await,
        Err(ExecError::UnknownOperation { .. })
    ));
}

#[tokio::test]
async fn an_operation_a_stop_rule_ended_runs_its_more_iterations_with_the_rules_started_over() {
    // Scores 0, 1, 2, then 0, 0: patience 2 ends it after 5 iterations of
    // 20; the 3 more improve.
    let host = ScriptedHost::new()
        .value(3, 0.0)
        .value(4, 0.0)
        .value(5, 105.0)
        .value(6, 106.0)
        .value(7, 107.0);
    let executor = executor(&host, 1);
    let cell = "#pragma repeat --iterations 20 --patience 2 --max-by value\nbody";
    let first = ended(executor.submit(cell, MapState::new()).await).await;
    assert!(first.stopped_early.is_some());
    assert_eq!(host.runs().len(), 5);
    let more = ended(executor.extend(&first.op, 3).await).await;
    assert_eq!(more.status, FinalStatus::Succeeded);
    assert_eq!(more.stopped_early, None, "the 3 more all ran");
    assert_eq!(best(&more), (7, Some(107.0)));
    // 5 ran, then 3 more: not up to the 20 the directive first had.
    let order: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
    assert_eq!(order, (0..8).collect::<Vec<_>>());
    assert_eq!(executor.summary(&more.op).await.unwrap().iterations, 8);
}

#[tokio::test]
async fn a_refused_extension_takes_nothing_over() {
    let host = ScriptedHost::new().delay(Duration::from_millis(50));
    let executor = executor(&host, 1);
    let handle = executor
        .submit(
            "#pragma repeat --iterations 4 --max-by value\nbody",
            MapState::new(),
        )
        .await
        .unwrap();
    let op = handle.id().to_owned();
    // Running: refused, and the run goes on to its end undisturbed.
    let Err(refused) = executor.extend(&op, 2).await else {
        panic!("a running operation was extended")
    };
    assert!(
        refused.to_string().contains("it has not ended"),
        "{refused}"
    );
    let outcome = handle.wait().await.unwrap();
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert_eq!(host.runs().len(), 4);
}
