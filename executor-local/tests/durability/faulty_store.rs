//! An object store (an S3 bucket, as a client meets it) whose k-th request
//! fails, for every k of an uninterrupted run: refused (it never took
//! effect) or unanswered (it took effect, and the answer was lost); once
//! (the operation goes on with the same store) or for good (the machine's
//! store is gone, and a new executor takes the operation up from the
//! bucket).

use pragma_checkpoint::testkit::{FaultyStore, RequestFault};

use super::*;

fn gone(store: &FaultyStore<MemoryStore>) -> Gone {
    let store = store.clone();
    Arc::new(move || store.gone())
}

/// The requests an uninterrupted run makes.
async fn requests_of(cell: &str) -> u64 {
    let store = FaultyStore::new(MemoryStore::new());
    let life = first_life(Some(store.clone()), gone(&store), cell).await;
    assert!(life.outcome.is_some());
    store.requests()
}

async fn every_request_fails_for_good(cell: &str) {
    let reference = reference(cell).await;
    let requests = requests_of(cell).await;
    let mut most_lost = 0;
    for k in 1..=requests {
        for fault in [RequestFault::Refused, RequestFault::Unanswered] {
            let point = format!("request {k} of {requests} {fault:?}, none after");
            let store = FaultyStore::new(MemoryStore::new()).fail_from(k, fault);
            let first = first_life(Some(store.clone()), gone(&store), cell).await;
            let bucket = store.inner().clone();
            let second = second_life(bucket.clone(), cell, first.op.as_deref(), &point).await;
            most_lost = most_lost.max(check_resumed(cell, &reference, &first, &second, &point));
            check_nothing_unreferenced(&bucket, &second.outcome.op, &point).await;
        }
    }
    eprintln!(
        "store gone, {:?}: {requests} requests, {} faults, at most {most_lost} runs lost",
        cell.lines().next().unwrap_or_default(),
        requests * 2
    );
}

async fn every_request_fails_once(cell: &str) {
    let reference = reference(cell).await;
    let requests = requests_of(cell).await;
    let mut failed_submits = 0;
    for k in 1..=requests {
        for fault in [RequestFault::Refused, RequestFault::Unanswered] {
            let point = format!("request {k} of {requests} {fault:?}, once");
            let store = FaultyStore::new(MemoryStore::new()).fail_once(k, fault);
            let executor = Executor::new(host(), store.clone(), config(3));
            // Once submitted, the operation goes on past the fault. A
            // submit the fault failed is taken up again, as a user would
            // run the cell again.
            let outcome = match executor.submit(cell, start_state()).await {
                Ok(handle) => {
                    let outcome = handle.wait().await.unwrap();
                    assert_eq!(outcome.status, FinalStatus::Succeeded, "{point}");
                    outcome
                }
                Err(_) => {
                    failed_submits += 1;
                    second_life(store.inner().clone(), cell, None, &point)
                        .await
                        .outcome
                }
            };
            assert_eq!(summary(&outcome), summary(&reference), "{point}");
            check_nothing_unreferenced(store.inner(), &outcome.op, &point).await;
        }
    }
    eprintln!(
        "one fault, {:?}: {} faults, {failed_submits} of them failed the submit",
        cell.lines().next().unwrap_or_default(),
        requests * 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_resumes_from_the_bucket_after_any_request_failed_for_good() {
    every_request_fails_for_good(REPEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_operation_resumes_from_the_bucket_after_any_request_failed_for_good() {
    every_request_fails_for_good(PARALLEL).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_survives_any_one_failed_request() {
    every_request_fails_once(REPEAT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_operation_survives_any_one_failed_request() {
    every_request_fails_once(PARALLEL).await;
}
