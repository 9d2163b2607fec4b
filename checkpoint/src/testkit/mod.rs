//! Test doubles for durability tests (feature `testkit`): a machine that
//! loses power, an object store whose requests fail.
//!
//! - [`ForgetfulFileSystem`]: an in-memory file system for
//!   [`LocalStore::with_file_system`](crate::LocalStore::with_file_system)
//!   that remembers which changes were synced. Lose power after the k-th
//!   call, and remount what a machine could have kept: the synced state
//!   plus any subset of the unsynced changes.
//! - [`FaultyStore`]: wraps any [`Store`](crate::Store) (an S3 bucket, say)
//!   so that its k-th request fails, once or from then on, either refused
//!   (it never took effect) or unanswered (it took effect, and the answer
//!   never came back).

mod faulty;
mod forgetful;

pub use faulty::{FaultyStore, RequestFault};
pub use forgetful::{ForgetfulFileSystem, NodeMetadata, Survivors};
