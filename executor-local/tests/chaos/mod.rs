//! Chaos: random worker losses and whole-executor crashes (the executor is
//! dropped and a new one resumes on the same store) in the middle of
//! operations. The outcome equals a fault-free run's, and no iteration runs
//! again once it was recorded as finished.

use std::collections::BTreeSet;

use super::*;

fn scripted() -> ScriptedHost {
    ScriptedHost::new()
        .delay(Duration::from_millis(1))
        .value(3, 30.0)
        .value(7, 70.0)
        .value(11, 70.0)
        .fail(5, 1)
}

/// Runs `cell` to the end, crashing the executor after a random number of
/// events (below `crash_window`) each time, until it ends. Returns the
/// outcome, every event of every executor in order, and the candidates the
/// store holds at the end.
async fn run_with_crashes(
    host: &ScriptedHost,
    cell: &str,
    seed: u64,
    loss: f64,
    crash_window: u64,
) -> (Outcome<MapState>, Vec<Event>, Vec<CandidateScore>) {
    let store = MemoryStore::new();
    let mut rng = seed.wrapping_mul(6_364_136_223_846_793_005).max(1);
    let mut random = move |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    let mut events = Vec::new();
    let mut op: Option<String> = None;
    for crash in 0..40 {
        let backend = Arc::new(FaultyBackend::new(3, loss, seed * 100 + crash));
        let executor = Executor::with_backend(host.clone(), store.clone(), backend, config(3));
        let mut handle = match &op {
            None => executor
                .submit(cell, MapState::from([("data".into(), 1.0)]))
                .await
                .unwrap(),
            Some(op) => executor.resume(op).await.unwrap(),
        };
        op = Some(handle.id().to_owned());
        // The last rounds run without crashes, so every run ends.
        let crash_after = if crash < 6 {
            1 + random(crash_window)
        } else {
            u64::MAX
        };
        let mut seen = 0;
        while let Some(event) = handle.next_event().await {
            let finished = matches!(event, Event::Finished { .. });
            events.push(event);
            seen += 1;
            if finished {
                let outcome = handle.wait().await.unwrap();
                let candidates = executor.candidates(&outcome.op).await.unwrap();
                assert_eq!(candidates.count(), outcome.candidate_count);
                return (outcome, events, candidates.collect().await.unwrap());
            }
            if seen >= crash_after {
                break;
            }
        }
        drop(handle);
        drop(executor); // the crash
    }
    panic!("the operation did not end after 40 executors");
}

/// No iteration starts after a commit recorded it as finished.
fn check_no_rerun_after_recording(events: &[Event], repeat: bool) {
    let mut recorded = BTreeSet::new();
    let mut checkpointed = 0;
    for event in events {
        match event {
            Event::CheckpointCommitted {
                recorded: r,
                iterations_done,
                ..
            } => {
                recorded.extend(r.iter().copied());
                if repeat {
                    checkpointed = checkpointed.max(*iterations_done);
                }
            }
            Event::IterationStarted { iteration, .. } => {
                assert!(
                    !recorded.contains(iteration),
                    "iteration {iteration} ran again after it was recorded"
                );
                assert!(
                    !repeat || *iteration >= checkpointed,
                    "iteration {iteration} ran again after checkpoint {checkpointed}"
                );
            }
            _ => {}
        }
    }
}

async fn compare_with_fault_free(cell: &str, repeat: bool) {
    let (reference, _) = run(&scripted(), cell).await;
    assert_eq!(reference.status, FinalStatus::Succeeded);
    for seed in 1..=6 {
        let host = scripted();
        let (outcome, events, _) = run_with_crashes(&host, cell, seed, 0.15, 25).await;
        assert_eq!(summary(&outcome), summary(&reference), "seed {seed}");
        check_no_rerun_after_recording(&events, repeat);
        let crashes = events
            .iter()
            .filter(|e| matches!(e, Event::Resumed { .. }))
            .count();
        let losses = events
            .iter()
            .filter(|e| matches!(e, Event::WorkerLost { .. }))
            .count();
        eprintln!(
            "chaos seed {seed}: {crashes} crashes, {losses} lost workers, {} runs",
            host.runs().len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_survives_crashes_and_lost_workers() {
    compare_with_fault_free(
        "#pragma parallel --iterations 14 --parallel-runs 3 --max-by value\nbody",
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeat_survives_crashes_and_lost_workers() {
    compare_with_fault_free(
        "#pragma repeat --iterations 12 --checkpoint-period 3 --max-by value\nbody",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_parallel_operation_resumes_from_compacted_records() {
    // 1,500 iterations: many small delta records and several full ones.
    let host = ScriptedHost::new().value(1_234, 1e9);
    let cell = "#pragma parallel --iterations 1500 --parallel-runs 4 --max-by value\nbody";
    let (outcome, events, candidates) = run_with_crashes(&host, cell, 99, 0.0, 1500).await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert_eq!(best(&outcome), (1_234, Some(1e9)));
    let mut iterations: Vec<u64> = candidates.iter().map(|c| c.iteration).collect();
    iterations.sort_unstable();
    assert_eq!(
        iterations,
        (0..1500).collect::<Vec<_>>(),
        "every iteration is a candidate exactly once"
    );
    check_no_rerun_after_recording(&events, false);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Resumed { iterations_done, .. } if *iterations_done > 0))
    );
}
