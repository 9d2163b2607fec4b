//! A store whose k-th request fails: the network or the object store as
//! a client meets them.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{Reader, Source, Store};

/// How the faulty request fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// It never reached the store: nothing changed.
    Refused,
    /// It took effect (a write is there), and its answer never came: the
    /// caller sees an error (a timeout). A read or a listing just fails.
    Unanswered,
}

#[derive(Debug, Default)]
struct Plan {
    requests: u64,
    /// The request (counted from 1) that fails, and how.
    fault_at: Option<(u64, RequestFault)>,
    /// Whether every request after it fails too (refused).
    lasting: bool,
}

/// What happens to the request about to be made.
enum Fate {
    Served,
    Fails(RequestFault),
}

/// Wraps a [`Store`] so that one request fails, and optionally every one
/// after it (the store, or the machine's network, is gone). Requests are
/// counted across clones: `put`, `create`, `get`, `delete` and `list` each
/// count one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pragma_checkpoint::Error> {
/// use pragma_checkpoint::testkit::{FaultyStore, RequestFault};
/// use pragma_checkpoint::{Key, MemoryStore, StoreExt};
///
/// let bucket = MemoryStore::new();
/// let store = FaultyStore::new(bucket.clone()).fail_once(1, RequestFault::Unanswered);
/// let key = Key::from_names(["answer"])?;
/// // The put took effect, but its caller saw a timeout.
/// assert!(store.put_bytes(&key, b"42").await.is_err());
/// assert_eq!(bucket.get_bytes(&key).await?, b"42");
/// assert_eq!(store.get_bytes(&key).await?, b"42"); // served again
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<Mutex<Plan>>,
}

impl<S: Store> FaultyStore<S> {
    /// `inner`, every request served.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            plan: Arc::default(),
        }
    }

    /// The `request`-th request (from 1) fails as `fault`; the others are
    /// served.
    pub fn fail_once(self, request: u64, fault: RequestFault) -> Self {
        *self.plan() = Plan {
            fault_at: Some((request, fault)),
            lasting: false,
            ..Plan::default()
        };
        self
    }

    /// The `request`-th request (from 1) fails as `fault`, and every later
    /// one is refused: the store is gone for this client.
    pub fn fail_from(self, request: u64, fault: RequestFault) -> Self {
        *self.plan() = Plan {
            fault_at: Some((request, fault)),
            lasting: true,
            ..Plan::default()
        };
        self
    }

    /// The requests made so far.
    pub fn requests(&self) -> u64 {
        self.plan().requests
    }

    /// Whether the store is gone (a lasting fault happened).
    pub fn gone(&self) -> bool {
        let plan = self.plan();
        plan.lasting && plan.fault_at.is_some_and(|(at, _)| plan.requests >= at)
    }

    /// The store underneath (the bucket itself, which keeps what took
    /// effect).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next_request(&self) -> Fate {
        let mut plan = self.plan();
        plan.requests += 1;
        match plan.fault_at {
            Some((at, fault)) if plan.requests == at => Fate::Fails(fault),
            Some((at, _)) if plan.lasting && plan.requests > at => {
                Fate::Fails(RequestFault::Refused)
            }
            _ => Fate::Served,
        }
    }
}

fn failed(key: Option<&Key>, fault: RequestFault) -> Error {
    let what = key.map_or_else(|| "listing".to_owned(), |k| format!("`{k}`"));
    let error = match fault {
        RequestFault::Refused => io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "the request did not reach the store (a simulated fault)",
        ),
        RequestFault::Unanswered => io::Error::new(
            io::ErrorKind::TimedOut,
            "no answer came from the store (a simulated fault)",
        ),
    };
    Error::io(format!("a request for {what}"), error)
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn put(&self, key: &Key, data: Source<'_>) -> Result<u64> {
        match self.next_request() {
            Fate::Served => self.inner.put(key, data).await,
            Fate::Fails(RequestFault::Unanswered) => {
                let _ = self.inner.put(key, data).await;
                Err(failed(Some(key), RequestFault::Unanswered))
            }
            Fate::Fails(fault) => Err(failed(Some(key), fault)),
        }
    }

    async fn create(&self, key: &Key, data: &[u8]) -> Result<()> {
        match self.next_request() {
            Fate::Served => self.inner.create(key, data).await,
            Fate::Fails(RequestFault::Unanswered) => {
                let _ = self.inner.create(key, data).await;
                Err(failed(Some(key), RequestFault::Unanswered))
            }
            Fate::Fails(fault) => Err(failed(Some(key), fault)),
        }
    }

    async fn get(&self, key: &Key) -> Result<Reader> {
        match self.next_request() {
            Fate::Served => self.inner.get(key).await,
            Fate::Fails(fault) => Err(failed(Some(key), fault)),
        }
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        match self.next_request() {
            Fate::Served => self.inner.delete(key).await,
            Fate::Fails(RequestFault::Unanswered) => {
                let _ = self.inner.delete(key).await;
                Err(failed(Some(key), RequestFault::Unanswered))
            }
            Fate::Fails(fault) => Err(failed(Some(key), fault)),
        }
    }

    async fn list(&self, prefix: Option<&Key>) -> Result<Vec<Key>> {
        match self.next_request() {
            Fate::Served => self.inner.list(prefix).await,
            Fate::Fails(fault) => Err(failed(prefix, fault)),
        }
    }

    async fn remove_abandoned(&self, prefix: Option<&Key>) -> Result<usize> {
        // A clean-up of the wrapped store, not a request of its own.
        self.inner.remove_abandoned(prefix).await
    }
}
