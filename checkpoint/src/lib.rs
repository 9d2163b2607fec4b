//! Durable, atomic, verified checkpoint storage for background operations.
//!
//! An operation that runs for hours saves its progress here, so that a
//! crash, a kill, a preempted machine or a full disk loses at most the work
//! since the last checkpoint, and never the checkpoint itself.
//!
//! - [`Store`] is the small async trait a storage backend implements: put
//!   (atomic, streamed), exclusive create, get, delete, list. Conveniences
//!   live in [`StoreExt`]. It is implemented for `Arc<T>`, `Box<T>` and `&T`.
//! - Backends: [`MemoryStore`] (tests, embedding), [`LocalStore`] (a
//!   directory: temporary file, fsync, rename, fsync of the directory), and
//!   with the `object-store` feature [`ObjectStoreBackend`] (S3, GCS, Azure
//!   through the `object_store` crate; exclusive create is a conditional put).
//! - [`CheckpointLog`] is what executors use: per operation, commit a
//!   checkpoint (metadata and streamed data parts, every part checksummed)
//!   that becomes visible atomically; load the latest checkpoint that
//!   verifies, falling back past damaged ones with a [`Warning`]; load one by
//!   generation; keep only the latest and the ones named ([`retain`]);
//!   fence out stale writers with epochs ([`claim`], [`Error::Fenced`]).
//! - Every name a user supplies (operation ids, part names) is checked
//!   ([`validate_name`]): nothing can reach outside the store's root.
//! - With the `conformance` feature, [`conformance`] holds the tests that
//!   every backend passes, as public functions a third-party backend can run.
//! - [`LocalStore`] makes its file-system calls through a [`FileSystem`]
//!   ([`OsFileSystem`] by default). With the `testkit` feature,
//!   `testkit::ForgetfulFileSystem` is one that forgets unsynced writes on a
//!   simulated power loss: the durability tests lose power after every
//!   call of an operation and remount what a machine could have kept.
//!
//! [`retain`]: CheckpointLog::retain
//! [`claim`]: CheckpointLog::claim
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pragma_checkpoint::Error> {
//! use pragma_checkpoint::{CheckpointLog, LocalStore, Part};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = CheckpointLog::new(LocalStore::new(dir.path())?);
//!
//! // Starting (or resuming) an operation claims it: the claim is
//! // generation 0, and the lease's epoch.
//! let lease = log.claim("op-7").await?;
//! assert_eq!(lease.epoch(), 0);
//! for iteration in 0..3u64 {
//!     let state = format!("state after iteration {iteration}");
//!     let mut data = state.as_bytes();
//!     let meta = json!({ "iteration": iteration, "score": iteration as f64 / 10.0 });
//!     let manifest = log.commit(&lease, meta, vec![Part::new("state", &mut data)]).await?;
//!     // Keep the latest and (say) the first checkpoint as the best.
//!     log.retain(&lease, &[1]).await?;
//!     assert_eq!(manifest.generation(), 1 + iteration);
//! }
//! let kept: Vec<u64> = log.checkpoints("op-7").await?.iter().map(|m| m.generation()).collect();
//! assert_eq!(kept, vec![1, 3]);
//!
//! // A worker that resumes the operation fences the old lease out.
//! let resumed = log.claim("op-7").await?;
//! let mut data: &[u8] = b"late";
//! let late = log.commit(&lease, json!({}), vec![Part::new("state", &mut data)]).await;
//! assert!(matches!(late, Err(pragma_checkpoint::Error::Fenced { .. })));
//! let latest = log.load_latest("op-7").await?.expect("a checkpoint");
//! assert_eq!(latest.manifest.meta()["iteration"], 2);
//! # let _ = resumed;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod key;
mod local;
mod log;
mod memory;
#[cfg(feature = "object-store")]
mod object;
mod store;

#[cfg(feature = "conformance")]
#[cfg_attr(docsrs, doc(cfg(feature = "conformance")))]
pub mod conformance;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use error::{Error, Result};
pub use key::{Key, MAX_NAME_LEN, validate_name};
pub use local::{
    DirEntry, FileSystem, LocalStore, OsFileSystem, WritableFile, create_dir_all_durably,
};
pub use log::{CheckpointLog, Lease, Loaded, Manifest, Meta, Part, PartInfo, Warning};
pub use memory::MemoryStore;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use object::ObjectStoreBackend;
pub use store::{Reader, Source, Store, StoreExt};
