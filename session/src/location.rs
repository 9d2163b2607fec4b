//! Where a host's operations live, given as the user writes it (`--store
//! DIR`, `%pragma config store=...`): a directory, or an `s3://` URL.
//!
//! A directory holds everything: checkpoints under `store/`, and beside
//! them what stays on this machine (the [`Records`] under `runs/` and
//! `ops/`, run logs under `logs/`, a host's working files). With an
//! `s3://BUCKET/PREFIX` URL the checkpoints go to the bucket and the rest
//! stays here, in `.pragma/remote/<digest of the URL>` of the current
//! directory, so every host on a store finds the same records.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pragma_checkpoint::{LocalStore, Store};

use crate::records::Records;

/// An opened store: where checkpoints go, and the local directory beside.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    /// The directory for records, logs and working files.
    pub local: PathBuf,
    /// Where checkpoints go.
    pub checkpoints: Arc<dyn Store>,
    /// The store as the user wrote it, for messages and commands to suggest.
    pub shown: String,
}

/// The bucket of an `s3://BUCKET/PREFIX` store URL, and the prefix in it
/// (credentials and the endpoint from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`): for what a host keeps in the bucket beside the
/// checkpoints (the notebook's data blobs). The error says what is wrong
/// with `spec`.
///
/// ```
/// let error = pragma_session::open_bucket("s3:///x").unwrap_err();
/// assert!(error.contains("names no bucket"), "{error}");
/// ```
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub fn open_bucket(spec: &str) -> Result<(Arc<dyn object_store::ObjectStore>, String), String> {
    let Some(rest) = spec.strip_prefix("s3://") else {
        return Err(format!(
            "the store `{spec}` is not an s3://BUCKET/PREFIX URL"
        ));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!(
            "the store URL `{spec}` names no bucket; write it as s3://BUCKET/PREFIX"
        ));
    }
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| {
            format!(
                "cannot use the store `{spec}`: {e} (credentials and the endpoint come from \
                 AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT and AWS_ALLOW_HTTP)"
            )
        })?;
    Ok((Arc::new(s3), prefix.to_owned()))
}

impl StoreLocation {
    /// Opens (creating if need be) the store that `spec` names: a
    /// directory, or `s3://BUCKET/PREFIX` (credentials and the endpoint
    /// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`). The error says what is wrong
    /// with `spec` and what to write instead.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let location = pragma_session::StoreLocation::open(dir.path().to_str().unwrap()).unwrap();
    /// assert!(dir.path().join("store").is_dir());
    /// // git leaves it alone.
    /// assert!(std::fs::read_to_string(dir.path().join(".gitignore")).unwrap().contains("\n*\n"));
    /// assert_eq!(location.logs(), dir.path().join("logs"));
    ///
    /// let error = pragma_session::StoreLocation::open("ftp://host/x").unwrap_err();
    /// assert!(error.contains("give a directory or an s3://BUCKET/PREFIX URL"), "{error}");
    /// assert!(pragma_session::StoreLocation::open("").unwrap_err().starts_with("the store is empty"));
    /// ```
    pub fn open(spec: &str) -> Result<StoreLocation, String> {
        if spec.trim().is_empty() {
            return Err(
                "the store is empty: give a directory (the default is .pragma) or an \
                 s3://BUCKET/PREFIX URL"
                    .to_owned(),
            );
        }
        let (local, checkpoints): (PathBuf, Arc<dyn Store>) = match spec.split_once("://") {
            #[cfg(feature = "s3")]
            Some(("s3", _)) => {
                let (s3, prefix) = open_bucket(spec)?;
                let backend = pragma_checkpoint::ObjectStoreBackend::new(s3, &prefix)
                    .map_err(|e| format!("cannot use the store `{spec}`: {e}"))?;
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(spec.trim_end_matches('/').as_bytes());
                let local = Path::new(".pragma")
                    .join("remote")
                    .join(format!("{:08x}", hasher.finalize()));
                (local, Arc::new(backend))
            }
            #[cfg(not(feature = "s3"))]
            Some(("s3", _)) => {
                return Err(format!(
                    "the store `{spec}` is in a bucket, and this build cannot reach one: \
                     build pragma-session with its `s3` feature"
                ));
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "the store `{spec}` has the scheme `{scheme}`, which pragma does not support; \
                     give a directory or an s3://BUCKET/PREFIX URL"
                ));
            }
            None => {
                let local = PathBuf::from(spec);
                let store = LocalStore::new(local.join("store"))
                    .map_err(|e| format!("cannot use the store `{spec}`: {e}"))?;
                (local, Arc::new(store))
            }
        };
        std::fs::create_dir_all(&local)
            .map_err(|e| format!("cannot use the store `{spec}`: {}: {e}", local.display()))?;
        // A store holds pickled states and their data: never something to
        // commit. It says so to git itself (best effort: a store that
        // cannot take the file works all the same).
        let ignore = local.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(&ignore, "# pragma's store: states, checkpoints, logs\n*\n");
        }
        Ok(StoreLocation {
            local,
            checkpoints,
            shown: spec.to_owned(),
        })
    }

    /// Opens an existing store, for what only reads one: a directory
    /// without checkpoints is refused (a URL is taken as it is).
    pub fn existing(spec: &str) -> Result<StoreLocation, String> {
        if !spec.contains("://") && !Path::new(spec).join("store").is_dir() {
            return Err(format!(
                "there is no store at `{spec}` (run `pragma run` there first, or pass --store)"
            ));
        }
        StoreLocation::open(spec)
    }

    /// The lifecycle's records of the operations on this store.
    pub fn records(&self) -> Records {
        Records::new(&self.local)
    }

    /// Where iterations' standard output and error are kept.
    pub fn logs(&self) -> PathBuf {
        self.local.join("logs")
    }
}
