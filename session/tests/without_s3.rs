//! A build without the `s3` feature (the default: an embedder that never
//! touches a bucket builds no S3 client). `scripts/test` runs it on its
//! own (`cargo test -p pragma-session --test without_s3`): in the
//! workspace's build the `pragma` command turns the feature on.
#![cfg(not(feature = "s3"))]

use pragma_session::{StoreError, StoreLocation, StoreSpec};

#[test]
fn a_bucket_store_says_which_feature_reaches_it() {
    let bucket: StoreSpec = "s3://bucket/prefix".parse().unwrap();
    let error = StoreLocation::open(&bucket).unwrap_err();
    assert!(
        matches!(&error, StoreError::NoBucketSupport { spec } if spec == "s3://bucket/prefix"),
        "{error:?}"
    );
    assert!(error.to_string().contains("`s3` feature"), "{error}");
}

#[test]
fn a_directory_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("store");
    let location = StoreLocation::open(&StoreSpec::Directory(spec.clone())).unwrap();
    assert!(location.logs().starts_with(&spec));
}
