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

/// Where a store is, as parsed from what the user wrote (`--store`,
/// `%pragma config store=...`), before it is opened: parse it once, at the
/// edge, and pass this on.
///
/// ```
/// use pragma_session::{StoreError, StoreSpec};
///
/// let dir: StoreSpec = ".pragma".parse().unwrap();
/// assert_eq!(dir, StoreSpec::Directory(".pragma".into()));
/// let bucket: StoreSpec = "s3://models/runs/".parse().unwrap();
/// assert!(matches!(&bucket, StoreSpec::Bucket { bucket, prefix } if bucket == "models" && prefix == "runs"));
/// assert_eq!(bucket.to_string(), "s3://models/runs");
///
/// assert!(matches!("ftp://host/x".parse::<StoreSpec>(), Err(StoreError::Scheme { .. })));
/// assert!(matches!("s3:///x".parse::<StoreSpec>(), Err(StoreError::NoBucket { .. })));
/// assert!(matches!(" ".parse::<StoreSpec>(), Err(StoreError::Empty)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreSpec {
    /// A directory: checkpoints under `store/`, and beside them what stays
    /// on this machine.
    Directory(PathBuf),
    /// `s3://BUCKET/PREFIX`: checkpoints in the bucket, the rest in
    /// `.pragma/remote/<digest of the URL>` of the current directory.
    Bucket {
        /// The bucket.
        bucket: String,
        /// The prefix in it, without a trailing `/` (may be empty).
        prefix: String,
    },
}

impl std::str::FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(spec: &str) -> Result<StoreSpec, StoreError> {
        if spec.trim().is_empty() {
            return Err(StoreError::Empty);
        }
        match spec.split_once("://") {
            Some(("s3", rest)) => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(StoreError::NoBucket {
                        spec: spec.to_owned(),
                    });
                }
                Ok(StoreSpec::Bucket {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_end_matches('/').to_owned(),
                })
            }
            Some((scheme, _)) => Err(StoreError::Scheme {
                spec: spec.to_owned(),
                scheme: scheme.to_owned(),
            }),
            None => Ok(StoreSpec::Directory(PathBuf::from(spec))),
        }
    }
}

impl std::fmt::Display for StoreSpec {
    /// The store as a user writes it: the directory, or `s3://BUCKET/PREFIX`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Directory(dir) => write!(f, "{}", dir.display()),
            StoreSpec::Bucket { bucket, prefix } if prefix.is_empty() => {
                write!(f, "s3://{bucket}")
            }
            StoreSpec::Bucket { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// As the user writes it: serialised, a store is the same string it was
/// parsed from.
impl serde::Serialize for StoreSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for StoreSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<StoreSpec, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl StoreSpec {
    /// Whether it is a directory (which every process that shares it must
    /// mount at the same path), not a bucket.
    pub fn is_directory(&self) -> bool {
        matches!(self, StoreSpec::Directory(_))
    }

    /// The directory for records, logs and working files: the store's own
    /// directory, or for a bucket `.pragma/remote/<digest of the URL>` of
    /// the current directory (so that every host on it finds the same
    /// records).
    pub fn local_dir(&self) -> PathBuf {
        match self {
            StoreSpec::Directory(dir) => dir.clone(),
            StoreSpec::Bucket { .. } => {
                let mut hasher = crc32fast::Hasher::new();
                hasher.update(self.to_string().as_bytes());
                Path::new(".pragma")
                    .join("remote")
                    .join(format!("{:08x}", hasher.finalize()))
            }
        }
    }
}

/// Why a store cannot be used: each says what is wrong with the store the
/// user gave, and what to write or do instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Nothing was given.
    #[error(
        "the store is empty: give a directory (the default is .pragma) or an s3://BUCKET/PREFIX URL"
    )]
    Empty,
    /// A URL of a kind pragma does not support.
    #[error(
        "the store `{spec}` has the scheme `{scheme}`, which pragma does not support; give a \
         directory or an s3://BUCKET/PREFIX URL"
    )]
    Scheme {
        /// The store as given.
        spec: String,
        /// Its scheme.
        scheme: String,
    },
    /// An `s3://` URL without a bucket.
    #[error("the store URL `{spec}` names no bucket; write it as s3://BUCKET/PREFIX")]
    NoBucket {
        /// The store as given.
        spec: String,
    },
    /// A bucket, and this build has no S3 support.
    #[error(
        "the store `{spec}` is in a bucket, and this build cannot reach one: build \
         pragma-session with its `s3` feature"
    )]
    NoBucketSupport {
        /// The store as given.
        spec: String,
    },
    /// A directory without a store, where one must already be.
    #[error("there is no store at `{spec}` (run `pragma run` there first, or pass --store)")]
    Missing {
        /// The store as given.
        spec: String,
    },
    /// The store is well written, and cannot be used (no access, no
    /// credentials, a full disk).
    #[error("cannot use the store `{spec}`: {problem}")]
    Unusable {
        /// The store as given.
        spec: String,
        /// What failed.
        problem: String,
    },
}

/// An opened store: where checkpoints go, and the local directory beside.
#[derive(Debug, Clone)]
pub struct StoreLocation {
    /// The directory for records, logs and working files.
    pub local: PathBuf,
    /// Where checkpoints go.
    pub checkpoints: Arc<dyn Store>,
    /// Where it is (its `Display` is the store as a user writes it, for
    /// messages and commands to suggest).
    pub spec: StoreSpec,
}

/// The bucket of an `s3://BUCKET/PREFIX` store URL, and the prefix in it
/// (credentials and the endpoint from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`): for what a host keeps in the bucket beside the
/// checkpoints (the notebook's data blobs). The error says what is wrong
/// with `spec`.
///
/// ```
/// use pragma_session::{StoreSpec, open_bucket};
/// let directory: StoreSpec = "runs".parse().unwrap();
/// let error = open_bucket(&directory).unwrap_err();
/// assert!(error.to_string().contains("not an s3://BUCKET/PREFIX URL"), "{error}");
/// ```
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub fn open_bucket(
    spec: &StoreSpec,
) -> Result<(Arc<dyn object_store::ObjectStore>, String), StoreError> {
    let StoreSpec::Bucket { bucket, prefix } = spec else {
        return Err(StoreError::Unusable {
            spec: spec.to_string(),
            problem: "it is not an s3://BUCKET/PREFIX URL".to_owned(),
        });
    };
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| StoreError::Unusable {
            spec: spec.to_string(),
            problem: format!(
                "{e} (credentials and the endpoint come from AWS_ACCESS_KEY_ID, \
                 AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT and AWS_ALLOW_HTTP)"
            ),
        })?;
    Ok((Arc::new(s3), prefix.clone()))
}

impl StoreLocation {
    /// Opens (creating if need be) the store that `spec` names: a
    /// directory, or `s3://BUCKET/PREFIX` (credentials and the endpoint
    /// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`). The error says what is wrong
    /// with `spec` and what to write instead.
    ///
    /// ```
    /// use pragma_session::{StoreLocation, StoreSpec};
    /// let dir = tempfile::tempdir().unwrap();
    /// let location = StoreLocation::open(&StoreSpec::Directory(dir.path().into())).unwrap();
    /// assert!(dir.path().join("store").is_dir());
    /// // git leaves it alone.
    /// assert!(std::fs::read_to_string(dir.path().join(".gitignore")).unwrap().contains("\n*\n"));
    /// assert_eq!(location.logs(), dir.path().join("logs"));
    /// ```
    pub fn open(spec: &StoreSpec) -> Result<StoreLocation, StoreError> {
        let unusable = |problem: String| StoreError::Unusable {
            spec: spec.to_string(),
            problem,
        };
        let local = spec.local_dir();
        let checkpoints: Arc<dyn Store> = match spec {
            #[cfg(feature = "s3")]
            StoreSpec::Bucket { .. } => {
                let (s3, prefix) = open_bucket(spec)?;
                let backend = pragma_checkpoint::ObjectStoreBackend::new(s3, &prefix)
                    .map_err(|e| unusable(e.to_string()))?;
                Arc::new(backend)
            }
            #[cfg(not(feature = "s3"))]
            StoreSpec::Bucket { .. } => {
                return Err(StoreError::NoBucketSupport {
                    spec: spec.to_string(),
                });
            }
            StoreSpec::Directory(dir) => {
                Arc::new(LocalStore::new(dir.join("store")).map_err(|e| unusable(e.to_string()))?)
            }
        };
        std::fs::create_dir_all(&local)
            .map_err(|e| unusable(format!("{}: {e}", local.display())))?;
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
            spec: spec.clone(),
        })
    }

    /// Opens an existing store, for what only reads one: a directory
    /// without checkpoints is refused (a bucket is taken as it is).
    pub fn existing(spec: &StoreSpec) -> Result<StoreLocation, StoreError> {
        if let StoreSpec::Directory(dir) = spec
            && !dir.join("store").is_dir()
        {
            return Err(StoreError::Missing {
                spec: spec.to_string(),
            });
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
