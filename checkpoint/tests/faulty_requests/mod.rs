//! Every request of a log's commits and retains fails once, refused or
//! unanswered (it took effect, the answer was lost), as an object store's
//! requests may: the latest returned commit always loads, whole, and the
//! next commit's retain leaves no data that no checkpoint uses.

use std::collections::BTreeSet;

use pragma_checkpoint::testkit::{FaultyStore, RequestFault};
use pragma_checkpoint::{Lease, StoreExt};

use super::*;

async fn commit_state<S: Store>(
    log: &CheckpointLog<S>,
    lease: &Lease,
    text: &str,
) -> Result<u64, Error> {
    let mut data = text.as_bytes();
    let manifest = log
        .commit(
            lease,
            json!({ "text": text }),
            vec![Part::new("state", &mut data)],
        )
        .await?;
    log.retain(lease, &[]).await?;
    Ok(manifest.generation())
}

/// Claims, then commits and retains `texts` one after another; the texts
/// whose commit returned.
async fn write<S: Store>(log: &CheckpointLog<S>, texts: &[&str]) -> Vec<String> {
    let mut returned = Vec::new();
    let Ok(lease) = log.claim("op").await else {
        return returned;
    };
    for text in texts {
        if commit_state(log, &lease, text).await.is_ok() {
            returned.push((*text).to_owned());
        }
    }
    returned
}

/// For every request of a claim and four commits, a log on a fresh store
/// from `fresh` whose request fails once, each way.
pub(crate) async fn every_request_fails_once<S: Store + Clone>(fresh: impl Fn() -> S) -> u64 {
    let texts = ["one", "two", "three", "four"];
    let counting = FaultyStore::new(fresh());
    write(&CheckpointLog::new(counting.clone()), &texts).await;
    let requests = counting.requests();
    for k in 1..=requests {
        for fault in [RequestFault::Refused, RequestFault::Unanswered] {
            let point = format!("request {k} of {requests} {fault:?}");
            let store = FaultyStore::new(fresh()).fail_once(k, fault);
            let log = CheckpointLog::new(store.clone());
            let returned = write(&log, &texts).await;
            let loaded = log.load_latest("op").await.unwrap();
            if let Some(last) = returned.last() {
                let loaded = loaded.unwrap_or_else(|| panic!("{point}: nothing loads"));
                assert!(loaded.warnings.is_empty(), "{point}: {:?}", loaded.warnings);
                let text = read_part(&log, &loaded.manifest, "state").await;
                // The latest returned, or a later one that took effect
                // unanswered.
                let at = texts.iter().position(|t| t.as_bytes() == text).unwrap();
                let last_at = texts.iter().position(|t| t == last).unwrap();
                assert!(
                    at >= last_at,
                    "{point}: loaded {text:?} after {last:?} returned"
                );
            }
            // A new owner commits and cleans up: only its data is left.
            let lease = log.claim("op").await.unwrap();
            commit_state(&log, &lease, "five").await.unwrap();
            log.remove_leftovers(&lease).await.unwrap();
            let bucket = store.inner();
            let data: BTreeSet<String> = bucket
                .list(Some(&Key::from_names(["ops", "op", "data"]).unwrap()))
                .await
                .unwrap()
                .iter()
                .filter_map(|key| key.names().nth(3).map(str::to_owned))
                .collect();
            let latest = log.load_latest("op").await.unwrap().unwrap().manifest;
            assert_eq!(
                data,
                BTreeSet::from([latest.data_dir().to_owned()]),
                "{point}"
            );
            let state = Key::from_names(["ops", "op", "data", latest.data_dir(), "state"]).unwrap();
            assert_eq!(bucket.get_bytes(&state).await.unwrap(), b"five", "{point}");
        }
    }
    requests
}

#[tokio::test]
async fn any_one_failed_request_loses_no_returned_commit_and_leaves_no_unused_data() {
    let requests = every_request_fails_once(MemoryStore::new).await;
    eprintln!(
        "log in memory: {requests} requests, {} faults",
        requests * 2
    );
}
