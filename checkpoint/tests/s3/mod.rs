//! The object-store backend against a real S3-compatible server.
//!
//! `scripts/start-seaweedfs` starts SeaweedFS on 127.0.0.1 and prints the
//! variables these tests read. Without them the tests say loudly that they
//! were skipped, except under `CI=true`, where they must run.

use object_store::aws::AmazonS3Builder;
use pragma_checkpoint::ObjectStoreBackend;

use super::*;

pub(crate) fn s3_store(prefix: &str) -> Option<ObjectStoreBackend> {
    let Ok(endpoint) = std::env::var("PRAGMA_TEST_S3_ENDPOINT") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "under CI the S3 tests must run: .ci/run starts SeaweedFS and sets PRAGMA_TEST_S3_ENDPOINT"
        );
        eprintln!(
            "\n*** SKIPPED: S3 tests: PRAGMA_TEST_S3_ENDPOINT is not set (see scripts/start-seaweedfs) ***\n"
        );
        return None;
    };
    let bucket = std::env::var("PRAGMA_TEST_S3_BUCKET").unwrap_or_else(|_| "pragma".into());
    let s3 = AmazonS3Builder::from_env()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("an S3 client");
    let unique = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    Some(ObjectStoreBackend::new(Arc::new(s3), &unique).unwrap())
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    let Some(store) = s3_store("conformance") else {
        return;
    };
    conformance::run_all(&store).await.unwrap();
}

#[tokio::test]
async fn s3_commits_are_exclusive_under_many_writers() {
    let Some(store) = s3_store("exclusive") else {
        return;
    };
    let log = CheckpointLog::new(store);
    let lease = log.claim("op").await.unwrap();
    // Four writers race for the same generation: the conditional put lets
    // exactly one of them have it.
    let generation = lease.epoch() + 1;
    let commit = |n: u8| {
        let log = &log;
        let lease = lease.clone();
        async move {
            let data = [n; 64];
            let mut source: &[u8] = &data;
            log.commit_generation(
                &lease,
                generation,
                json!({ "writer": n }),
                vec![Part::new("state", &mut source)],
            )
            .await
        }
    };
    let (a, b, c, d) = tokio::join!(commit(1), commit(2), commit(3), commit(4));
    let winners = [&a, &b, &c, &d].iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{a:?} {b:?} {c:?} {d:?}");
    for result in [&a, &b, &c, &d] {
        if let Err(e) = result {
            assert!(matches!(e, Error::Conflict { .. }), "{e}");
        }
    }
    let loaded = log.load_latest("op").await.unwrap().unwrap();
    let writer = loaded.manifest.meta()["writer"].as_u64().unwrap() as u8;
    assert_eq!(
        read_part(&log, &loaded.manifest, "state").await,
        vec![writer; 64]
    );
}

#[tokio::test]
async fn s3_any_one_failed_request_loses_no_returned_commit_and_leaves_no_unused_data() {
    if s3_store("probe").is_none() {
        return;
    }
    let fresh = || s3_store("faults").expect("S3 was there a moment ago");
    let requests = super::faulty_requests::every_request_fails_once(fresh).await;
    eprintln!("log on S3: {requests} requests, {} faults", requests * 2);
}
