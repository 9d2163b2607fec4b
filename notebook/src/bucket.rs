//! [`BucketBlobs`]: the notebook's data blobs in a bucket store
//! (`s3://BUCKET/PREFIX`), as `PREFIX/blobs/AB/DIGEST`, for the Python
//! side's `pragma_notebook.blobs.BucketBlobs`, which keeps a local copy of
//! each to map. Only objects move here: naming and checking blobs is the
//! Python side's.

use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The data blobs of a bucket store.
#[pyclass(module = "pragma_notebook._native", frozen)]
pub(crate) struct BucketBlobs {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    /// `PREFIX/blobs`.
    root: Path,
    url: String,
}

/// A blob in the bucket (`BucketBlobs.head`, `list`).
#[pyclass(module = "pragma_notebook._native", frozen, get_all)]
#[derive(Debug)]
pub(crate) struct StoredBlob {
    /// Its name: the digest of its bytes.
    pub(crate) digest: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// How many seconds ago it was written (0 for a time to come: clocks
    /// differ).
    pub(crate) age_seconds: f64,
}

impl StoredBlob {
    fn of(digest: &str, meta: &object_store::ObjectMeta) -> StoredBlob {
        StoredBlob {
            digest: digest.to_owned(),
            size: meta.size,
            age_seconds: age(meta),
        }
    }
}

/// How many seconds ago the object was written (0 for a time to come:
/// clocks differ).
fn age(meta: &object_store::ObjectMeta) -> f64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let written = u128::try_from(meta.last_modified.timestamp_millis()).unwrap_or(0);
    now.saturating_sub(written) as f64 / 1000.0
}

fn io_error(what: String) -> impl FnOnce(object_store::Error) -> PyErr {
    move |e| PyOSError::new_err(format!("{what}: {e}"))
}

impl BucketBlobs {
    fn key(&self, digest: &str) -> PyResult<Path> {
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PyValueError::new_err(format!(
                "`{digest}` is not a blob's name"
            )));
        }
        Ok(self.root.clone().join(&digest[..2]).join(digest))
    }
}

#[pymethods]
impl BucketBlobs {
    /// The data blobs of the store `url` (`s3://BUCKET/PREFIX`).
    #[new]
    fn new(url: &str) -> PyResult<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| PyOSError::new_err(e.to_string()))?;
        let (store, prefix) = {
            let _entered = runtime.enter();
            url.parse()
                .and_then(|spec| pragma_session::open_bucket(&spec))
                .map_err(|e| PyValueError::new_err(e.to_string()))?
        };
        let root = Path::from(prefix.as_str()).join("blobs");
        Ok(BucketBlobs {
            runtime,
            store,
            root,
            url: url.to_owned(),
        })
    }

    /// The blob `digest` as the bucket has it, or `None` if it has no
    /// such blob.
    fn head(&self, py: Python<'_>, digest: &str) -> PyResult<Option<StoredBlob>> {
        let key = self.key(digest)?;
        let found = py.detach(|| self.runtime.block_on(self.store.head(&key)));
        match found {
            Ok(meta) => Ok(Some(StoredBlob::of(digest, &meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_error(format!(
                "cannot look for the blob {digest} in {}",
                self.url
            ))(e)),
        }
    }

    /// Writes the file `path` as the blob `digest`, in parts (a blob may
    /// be larger than one request takes); durable in the bucket once
    /// this returns.
    fn upload(&self, py: Python<'_>, digest: &str, path: &str) -> PyResult<()> {
        let key = self.key(digest)?;
        let what = format!("cannot write the blob {digest} to {}", self.url);
        py.detach(|| {
            self.runtime.block_on(async {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| PyOSError::new_err(format!("{what}: {path}: {e}")))?;
                let upload = self
                    .store
                    .put_multipart(&key)
                    .await
                    .map_err(io_error(what.clone()))?;
                let mut parts = WriteMultipart::new(upload);
                let mut buffer = vec![0u8; 8 << 20];
                loop {
                    let read = file
                        .read(&mut buffer)
                        .await
                        .map_err(|e| PyOSError::new_err(format!("{what}: {path}: {e}")))?;
                    if read == 0 {
                        break;
                    }
                    parts
                        .wait_for_capacity(4)
                        .await
                        .map_err(io_error(what.clone()))?;
                    parts.write(&buffer[..read]);
                }
                parts.finish().await.map_err(io_error(what.clone()))?;
                Ok(())
            })
        })
    }

    /// Reads the blob `digest` into the file `path` (created, synced).
    fn download(&self, py: Python<'_>, digest: &str, path: &str) -> PyResult<()> {
        let key = self.key(digest)?;
        let what = format!("cannot read the blob {digest} from {}", self.url);
        py.detach(|| {
            self.runtime.block_on(async {
                let got = self.store.get(&key).await.map_err(io_error(what.clone()))?;
                let mut stream = got.into_stream();
                let mut file = tokio::fs::File::create(path)
                    .await
                    .map_err(|e| PyOSError::new_err(format!("{what}: {path}: {e}")))?;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(io_error(what.clone()))?;
                    file.write_all(&chunk)
                        .await
                        .map_err(|e| PyOSError::new_err(format!("{what}: {path}: {e}")))?;
                }
                file.sync_all()
                    .await
                    .map_err(|e| PyOSError::new_err(format!("{what}: {path}: {e}")))?;
                Ok(())
            })
        })
    }

    /// Every blob of the bucket.
    fn list(&self, py: Python<'_>) -> PyResult<Vec<StoredBlob>> {
        let what = format!("cannot list the blobs of {}", self.url);
        py.detach(|| {
            self.runtime.block_on(async {
                let mut listed = self.store.list(Some(&self.root));
                let mut found = Vec::new();
                while let Some(meta) = listed.next().await {
                    let meta = meta.map_err(io_error(what.clone()))?;
                    if let Some(name) = meta.location.filename() {
                        found.push(StoredBlob::of(name, &meta));
                    }
                }
                Ok(found)
            })
        })
    }

    /// Deletes the blob `digest` (a missing one too).
    fn delete(&self, py: Python<'_>, digest: &str) -> PyResult<()> {
        let key = self.key(digest)?;
        let deleted = py.detach(|| self.runtime.block_on(self.store.delete(&key)));
        match deleted {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(format!(
                "cannot delete the blob {digest} from {}",
                self.url
            ))(e)),
        }
    }
}
