//! The storage trait that backends implement.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};
use crate::key::Key;

/// A stream of bytes read from a store.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;

/// The source of the bytes for [`Store::put`].
pub type Source<'a> = &'a mut (dyn AsyncRead + Send + Unpin);

/// Object storage: the minimum a backend must provide for checkpoints.
///
/// Keys are validated [`Key`]s; a backend maps them under its own root and
/// never elsewhere. Conveniences are in [`StoreExt`]; the checkpoint
/// protocol is in [`CheckpointLog`](crate::CheckpointLog).
///
/// # Contract
///
/// - [`put`](Store::put) replaces the object atomically: a reader sees the
///   whole old object or the whole new one, never a mix or a prefix, also
///   after a crash in the middle of the write. When `put` returns, the object
///   is durable (it survives a crash of the machine, as far as the medium
///   allows). It streams: memory must not grow with the object's size.
/// - [`create`](Store::create) is *exclusive create*: it writes the object
///   only if no object has the key, atomically and durably, and otherwise
///   fails with [`Error::AlreadyExists`] and changes nothing. Of concurrent
///   creators of one key, exactly one succeeds, across processes and
///   machines that share the store. The checkpoint log's commits and fencing
///   rest on this.
/// - [`get`](Store::get) of a missing key is [`Error::NotFound`].
/// - [`delete`](Store::delete) of a missing key succeeds (deletes are
///   idempotent, so an interrupted clean-up can run again).
/// - [`list`](Store::list) returns every key under the prefix (all of them
///   for `None`), in ascending byte order, without duplicates. Objects being
///   written by `put` are not listed until complete.
///
/// # Pitfalls for implementors
///
/// - A rename over an existing file is atomic on POSIX file systems, but a
///   plain "check, then write" is not exclusive: use `O_EXCL`/`link(2)`, or
///   a conditional put (`If-None-Match: *`) on object stores.
/// - Temporary files must not show up in `list`.
/// - Map "no space left" to [`Error::StorageFull`] (see [`Error::io`]).
///
/// Run [`conformance::run_all`](crate::conformance) (feature `conformance`)
/// against a new backend.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Writes the object at `key` from `data`, replacing any object there.
    /// Returns the number of bytes written.
    async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64>;

    /// Writes the object at `key` only if there is none (exclusive create).
    async fn create(&self, key: &Key, data: &[u8]) -> Result<()>;

    /// Reads the object at `key`.
    async fn get(&self, key: &Key) -> Result<Reader>;

    /// Deletes the object at `key`; a missing key is not an error.
    async fn delete(&self, key: &Key) -> Result<()>;

    /// Every key under `prefix` (all keys for `None`), in ascending order.
    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>>;

    /// Deletes what writers that are gone left half-written under
    /// `prefix` (a crash mid-`put`): temporary files of a local store, say.
    /// Must be safe while live writers work. Returns how many objects it
    /// deleted. A backend that leaves nothing behind keeps the default,
    /// which does nothing.
    async fn remove_abandoned(&self, _prefix: Option<&Key>) -> Result<usize> {
        Ok(0)
    }
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        #[async_trait]
        impl<T: Store + ?Sized> Store for $ty {
            async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64> {
                (**self).put(key, data).await
            }
            async fn create(&self, key: &Key, data: &[u8]) -> Result<()> {
                (**self).create(key, data).await
            }
            async fn get(&self, key: &Key) -> Result<Reader> {
                (**self).get(key).await
            }
            async fn delete(&self, key: &Key) -> Result<()> {
                (**self).delete(key).await
            }
            async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
                (**self).list(prefix).await
            }
            async fn remove_abandoned(&self, prefix: Option<&Key>) -> Result<usize> {
                (**self).remove_abandoned(prefix).await
            }
        }
    )*};
}

forward_store!(Arc<T>, Box<T>, &T);

/// Conveniences on top of any [`Store`].
#[async_trait]
pub trait StoreExt: Store {
    /// Reads a whole (small) object into memory.
    async fn get_bytes(&self, key: &Key) -> Result<Vec<u8>> {
        let mut reader = self.get(key).await?;
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| Error::io(format!("reading `{key}`"), e))?;
        Ok(bytes)
    }

    /// Writes a whole (small) object from memory.
    async fn put_bytes(&self, key: &Key, bytes: &[u8]) -> Result<u64> {
        let mut source = bytes;
        self.put(key, &mut source).await
    }

    /// Whether an object exists at `key`.
    async fn exists(&self, key: &Key) -> Result<bool> {
        match self.get(key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl<T: Store + ?Sized> StoreExt for T {}
