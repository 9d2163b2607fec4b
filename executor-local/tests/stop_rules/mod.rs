//! The stop rules: `--patience` ends a repeat whose score stopped
//! improving, `--target` a repeat or parallel operation whose score reached
//! it; each succeeds with its best so far and says why it stopped.

use super::*;

/// Runs `cell` to its end on 3 workers; the outcome, the events, the
/// runs, and the summary the store gives.
async fn stopping(
    host: &ScriptedHost,
    cell: &str,
) -> (
    Outcome<MapState>,
    Vec<Event>,
    pragma_executor_local::OperationSummary,
) {
    let executor = executor(host, 3);
    let handle = executor.submit(cell, MapState::new()).await.unwrap();
    let (outcome, events) = handle.wait_with_events().await.unwrap();
    let summary = executor.summary(&outcome.op).await.unwrap();
    (outcome, events, summary)
}

fn said_stop(events: &[Event]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::StoppedEarly { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn patience_stops_a_repeat_whose_score_stopped_improving() {
    // The score climbs to 5 at iteration 5, then stays at 1.
    let mut host = ScriptedHost::new();
    for iteration in 6..40 {
        host = host.value(iteration, 1.0);
    }
    let (outcome, events, summary) = stopping(
        &host,
        "#pragma repeat --iterations 40 --checkpoint-period 2 --patience 3 --max-by value\nbody",
    )
    .await;
    let why = "no better score in 3 checkpoints after iteration 5 (`--patience`)";
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert_eq!(best(&outcome), (5, Some(5.0)));
    assert_eq!(outcome.stopped_early.as_deref(), Some(why));
    assert_eq!(said_stop(&events), vec![why]);
    // Checkpoints after iterations 7, 9 and 11 did not improve: the
    assert_eq!(outcome.candidate_count, 6);
    // twelfth iteration's checkpoint is the last; the one after it may
    // have started, and counts as a run then.
    assert_eq!(host.runs().len(), 12);
    assert!(
        (12..=13).contains(&outcome.usage.iterations_run),
        "{:?}",
        outcome.usage
    );
    // The store says so too, for status and reports later.
    assert_eq!(summary.stopped_early.as_deref(), Some(why));
    assert_eq!(summary.status, Some(FinalStatus::Succeeded));
    assert_eq!(summary.done, 12);
}

#[tokio::test]
async fn a_repeat_stops_at_the_first_checkpoint_that_reaches_its_target() {
    let host = ScriptedHost::new();
    let (outcome, _, _) = stopping(
        &host,
        "#pragma repeat --iterations 30 --checkpoint-period 2 --target 4 --max-by value\nbody",
    )
    .await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert_eq!(best(&outcome), (5, Some(5.0)));
    assert_eq!(
        outcome.stopped_early.as_deref(),
        Some("iteration 5 scored 5, reaching the target 4 (`--target`)")
    );
    assert!(host.runs().len() <= 7, "{} runs", host.runs().len());
}

#[tokio::test]
async fn a_parallel_operation_stops_starting_and_stops_its_runs_once_a_score_reaches_the_target() {
    // Each iteration scores its number; those from 10 on are slow, so
    // that some are running when iteration 7 reaches the target.
    let mut host = ScriptedHost::new().delay(Duration::from_millis(20));
    for iteration in 10..200 {
        host = host.value(iteration, iteration as f64);
    }
    let (outcome, events, summary) = stopping(
        &host,
        "#pragma parallel --iterations 200 --target 7 --max-by value\nbody",
    )
    .await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    let (iteration, score) = best(&outcome);
    assert!(
        score >= Some(7.0) && iteration >= 7,
        "{iteration} {score:?}"
    );
    let why = said_stop(&events);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(
        why[0].ends_with("reaching the target 7 (`--target`)"),
        "{why:?}"
    );
    assert_eq!(outcome.stopped_early.as_deref(), Some(why[0]));
    assert_eq!(summary.stopped_early.as_deref(), Some(why[0]));
    // Far fewer than 200 ran; those stopped in flight (at most one per
    // worker) count as runs, though the scripted host logs only the runs
    // that got past their delay.
    let runs = host.runs().len() as u64;
    assert!(runs < 20, "{runs} runs");
    let counted = outcome.usage.iterations_run;
    assert!(
        (runs..=runs + 3).contains(&counted),
        "{counted} counted, {runs} ran"
    );
    assert!(outcome.candidate_count <= runs);
}

#[tokio::test]
async fn a_target_never_reached_lets_every_iteration_run() {
    let host = ScriptedHost::new();
    let (outcome, events, summary) = stopping(
        &host,
        "#pragma parallel --iterations 12 --target -1 --min-by value\nbody",
    )
    .await;
    assert_eq!(outcome.status, FinalStatus::Succeeded);
    assert_eq!(outcome.candidate_count, 12);
    assert_eq!(outcome.stopped_early, None);
    assert!(said_stop(&events).is_empty());
    assert_eq!(summary.stopped_early, None);
}
