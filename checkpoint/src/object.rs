//! The object-store backend (S3, GCS, Azure, HTTP) through `object_store`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{Reader, Source, Store};

/// Objects in any [`ObjectStore`], under a prefix.
///
/// - `put` streams through a buffered multipart upload, which the service
///   makes visible atomically when it completes.
/// - `create` is a conditional put (`PutMode::Create`, `If-None-Match: *`
///   on S3): the service lets exactly one of concurrent creators win. The
///   service must honour it; S3 does, and so does SeaweedFS.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use pragma_checkpoint::{CheckpointLog, ObjectStoreBackend};
///
/// let s3 = object_store::aws::AmazonS3Builder::from_env()
///     .with_bucket_name("checkpoints")
///     .build()?;
/// let store = ObjectStoreBackend::new(Arc::new(s3), "team/pragma")?;
/// let log = CheckpointLog::new(store);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: Option<Key>,
}

const NAME: &str = "object store";

impl ObjectStoreBackend {
    /// Objects under `prefix` (`""` for the bucket's root) in `store`.
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self> {
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(Key::parse(prefix)?)
        };
        Ok(ObjectStoreBackend { store, prefix })
    }

    fn path(&self, key: &Key) -> Path {
        match &self.prefix {
            Some(prefix) => Path::from(format!("{prefix}/{key}")),
            None => Path::from(key.as_str()),
        }
    }

    fn map(key: &Key, error: object_store::Error) -> Error {
        match error {
            object_store::Error::NotFound { .. } => Error::NotFound {
                key: key.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => Error::AlreadyExists {
                key: key.to_string(),
            },
            other => Error::Backend {
                store: NAME,
                source: Box::new(other),
            },
        }
    }
}

#[async_trait]
impl Store for ObjectStoreBackend {
    async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64> {
        let mut writer =
            object_store::buffered::BufWriter::new(Arc::clone(&self.store), self.path(key));
        let copied = tokio::io::copy(data, &mut writer).await;
        let total = match copied {
            Ok(total) => total,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(Error::io(format!("uploading `{key}`"), e));
            }
        };
        writer
            .shutdown()
            .await
            .map_err(|e| Error::io(format!("completing the upload of `{key}`"), e))?;
        Ok(total)
    }

    async fn create(&self, key: &Key, data: &[u8]) -> Result<()> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.path(key), PutPayload::from(data.to_vec()), options)
            .await
            .map(|_| ())
            .map_err(|e| Self::map(key, e))
    }

    async fn get(&self, key: &Key) -> Result<Reader> {
        let result = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| Self::map(key, e))?;
        let stream = result.into_stream().map_err(std::io::Error::other);
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::map(key, e)),
        }
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
        let base = self.prefix.as_ref().map(|p| Path::from(p.as_str()));
        let search = match prefix {
            Some(p) => Some(self.path(p)),
            None => base.clone(),
        };
        let objects: Vec<_> = self
            .store
            .list(search.as_ref())
            .try_collect()
            .await
            .map_err(|e| Error::Backend {
                store: NAME,
                source: Box::new(e),
            })?;
        let strip = base.map(|b| format!("{b}/"));
        let mut keys: Vec<Key> = objects
            .into_iter()
            .filter_map(|meta| {
                let full = meta.location.to_string();
                let relative = match &strip {
                    Some(s) => full.strip_prefix(s.as_str())?.to_owned(),
                    None => full,
                };
                Key::parse(&relative).ok()
            })
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
