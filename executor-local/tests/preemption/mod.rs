//! A preemption notice ([`Handle::suspend`]): nothing new starts, what
//! runs may finish within the grace period, a repeat checkpoints its last
//! finished iteration; a resume then runs nothing that finished again.

use pragma_executor_local::Handle;

use super::*;

/// Follows `handle` until `iteration` finished, then gives the notice.
async fn notice_after(handle: &mut Handle<MapState>, iteration: u64, grace: Duration) {
    while let Some(event) = handle.next_event().await {
        if matches!(event, Event::IterationFinished { iteration: i, .. } if i == iteration) {
            handle.suspend(grace);
            return;
        }
    }
    panic!("iteration {iteration} never finished");
}

#[tokio::test]
async fn after_a_notice_a_resume_runs_each_iteration_once_in_all() {
    for cell in [
        "#pragma repeat --iterations 20 --checkpoint-period 5 --max-by value\nbody",
        "#pragma parallel --iterations 30 --parallel-runs 3 --max-by value\nbody",
    ] {
        let script = || {
            ScriptedHost::new()
                .delay(Duration::from_millis(30))
                .value(13, 99.0)
        };
        let (direct, _) = run(&script(), cell).await;
        let store = MemoryStore::new();
        let host = script();
        let executor = Executor::new(host.clone(), store.clone(), config(3));
        let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
        let op = handle.id().to_owned();
        // Iteration 6 finished: for the repeat, one past its checkpoint
        // after 5, the next running.
        notice_after(&mut handle, 6, Duration::from_secs(10)).await;
        let (suspended, events) = handle.wait_with_events().await.unwrap();
        assert_eq!(suspended.status, FinalStatus::Suspended, "{cell}");
        assert!(
            events.iter().any(
                |e| matches!(e, Event::Suspending { grace_seconds, .. } if *grace_seconds == 10.0)
            ),
            "{cell}: {events:?}"
        );
        assert_eq!(suspended.usage.work_lost, 0, "{cell}: nothing is lost");
        let before = host.runs().len();
        assert!(before < 20, "{cell}: {before} ran before the notice took");
        // It waits to be resumed, as after a crash.
        assert_eq!(
            executor.unfinished().await.unwrap(),
            vec![op.clone()],
            "{cell}"
        );
        drop(executor);

        let executor = Executor::new(host.clone(), store, config(3));
        let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
        assert_eq!(outcome.status, FinalStatus::Succeeded, "{cell}");
        assert_eq!(best(&outcome), best(&direct), "{cell}");
        // Every iteration ran exactly once, across both.
        let mut iterations: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
        iterations.sort_unstable();
        let total = direct.usage.iterations_run;
        assert_eq!(iterations, (0..total).collect::<Vec<_>>(), "{cell}");
        assert_eq!(outcome.usage.iterations_run, total, "{cell}");
        assert_eq!(outcome.usage.work_lost, 0, "{cell}");
    }
}

#[tokio::test]
async fn a_run_longer_than_the_grace_is_stopped_and_counted_lost() {
    let cell = "#pragma repeat --iterations 6 --checkpoint-period 1 --max-by value\nbody";
    let host = ScriptedHost::new().delay(Duration::from_millis(300));
    let store = MemoryStore::new();
    let executor = Executor::new(host.clone(), store.clone(), config(1));
    let mut handle = executor.submit(cell, MapState::new()).await.unwrap();
    let op = handle.id().to_owned();
    notice_after(&mut handle, 1, Duration::from_millis(20)).await;
    let suspended = handle.wait().await.unwrap();
    assert_eq!(suspended.status, FinalStatus::Suspended);
    // Iteration 2 was running: stopped at the end of the grace.
    assert_eq!(suspended.usage.work_lost, 1);
    assert_eq!(host.runs().len(), 2);
    drop(executor);
    let executor = Executor::new(host.clone(), store, config(1));
    let outcome = executor.resume(&op).await.unwrap().wait().await.unwrap();
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    let iterations: Vec<u64> = host.runs().iter().map(|r| r.iteration).collect();
    assert_eq!(iterations, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(outcome.usage.work_lost, 1);
}
