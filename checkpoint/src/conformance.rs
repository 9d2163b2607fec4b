//! The contract of [`Store`], as tests any backend can run.
//!
//! [`run_all`] runs every check and returns what it found wrong (a
//! [`Nonconformance`] naming the check and the broken rule) instead of
//! panicking, as the executor's suites for hosts and backends do. The checks
//! use keys under `conformance/` and operations named `conformance-*`: run
//! them on an empty store (or one without those keys):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use pragma_checkpoint::{conformance, MemoryStore};
//! // In a third-party crate: a #[tokio::test] that builds your store.
//! let store = MemoryStore::new();
//! conformance::run_all(&store).await.expect("the store conforms");
//! # }
//! ```
//!
//! Add `pragma-checkpoint = { version = "...", features = ["conformance"] }`
//! to your dev-dependencies. `run_all` streams a 64 MiB object; call the
//! checks one by one to choose ([`large_objects_stream`] takes a size):
//! each is an async function that asserts, as a test does, and panics with
//! a message naming the broken rule.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::error::Error;
use crate::key::Key;
use crate::log::{CheckpointLog, Part};
use crate::store::{Store, StoreExt};

fn key(path: &str) -> Key {
    match Key::parse(&format!("conformance/{path}")) {
        Ok(key) => key,
        Err(e) => panic!("conformance key `{path}`: {e}"),
    }
}

async fn get(store: &dyn Store, k: &Key) -> Vec<u8> {
    match store.get_bytes(k).await {
        Ok(bytes) => bytes,
        Err(e) => panic!("get `{k}` after a successful write: {e}"),
    }
}

/// What a store does that the [`Store`] contract forbids: the check that
/// found it, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("does not conform: {0}")]
pub struct Nonconformance(pub String);

/// Runs every check of this module, in order, and stops at the first that
/// fails.
pub async fn run_all(store: &dyn Store) -> Result<(), Nonconformance> {
    check("put then get", put_then_get_returns_the_bytes(store)).await?;
    check("missing keys", missing_keys(store)).await?;
    check("exclusive create", exclusive_create(store)).await?;
    check(
        "concurrent creates",
        concurrent_creates_exactly_one_wins(store),
    )
    .await?;
    check("listing", list_is_sorted_and_respects_prefixes(store)).await?;
    check("a failed put", failed_put_leaves_the_old_object(store)).await?;
    check("large objects", large_objects_stream(store, 64 << 20)).await?;
    check(
        "the checkpoint log on this store",
        checkpoint_log_on_this_store(store),
    )
    .await
}

/// Runs the check `name`, its failed assertion as a [`Nonconformance`].
async fn check(name: &str, run: impl Future<Output = ()>) -> Result<(), Nonconformance> {
    // Not through `unpanicked`: one future less in each check's, which
    // `run_all` nests eight of (a debug build's test thread has 2 MiB).
    AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .map_err(|panic| Nonconformance(format!("{name}: {}", panic_text(&*panic))))
}

/// Runs `check`, a panic in it (a failed assertion, a panic of the
/// implementation under test) turned into a [`Nonconformance`] saying
/// `WHAT: MESSAGE`: how every conformance suite of the workspace answers
/// instead of panicking.
pub async fn unpanicked<T>(
    what: &str,
    check: impl Future<Output = Result<T, Nonconformance>>,
) -> Result<T, Nonconformance> {
    match AssertUnwindSafe(check).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(Nonconformance(format!("{what}: {}", panic_text(&*panic)))),
    }
}

/// What a panic said.
fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// `put` then `get` gives the same bytes; `put` replaces; empty objects work.
pub async fn put_then_get_returns_the_bytes(store: &dyn Store) {
    let k = key("roundtrip/object");
    assert_eq!(store.put_bytes(&k, b"first").await.expect("put"), 5);
    assert_eq!(get(store, &k).await, b"first");
    store
        .put_bytes(&k, b"second, longer")
        .await
        .expect("put over an object");
    assert_eq!(get(store, &k).await, b"second, longer", "put must replace");
    let empty = key("roundtrip/empty");
    assert_eq!(store.put_bytes(&empty, b"").await.expect("put empty"), 0);
    assert_eq!(get(store, &empty).await, b"");
    store.delete(&k).await.expect("delete");
    store.delete(&empty).await.expect("delete");
}

/// A missing key is `NotFound` for `get`; deleting it succeeds.
pub async fn missing_keys(store: &dyn Store) {
    let k = key("missing/never-written");
    assert!(
        matches!(store.get(&k).await, Err(Error::NotFound { .. })),
        "get of a missing key must be NotFound"
    );
    store
        .delete(&k)
        .await
        .expect("delete of a missing key must succeed");
    store.put_bytes(&k, b"x").await.expect("put");
    store.delete(&k).await.expect("delete");
    assert!(
        matches!(store.get(&k).await, Err(Error::NotFound { .. })),
        "get after delete"
    );
    store
        .delete(&k)
        .await
        .expect("a second delete must succeed");
}

/// `create` writes only where nothing is, and changes nothing otherwise.
pub async fn exclusive_create(store: &dyn Store) {
    let k = key("create/record");
    store
        .create(&k, b"winner")
        .await
        .expect("create on a free key");
    assert!(
        matches!(
            store.create(&k, b"loser").await,
            Err(Error::AlreadyExists { .. })
        ),
        "create on a taken key must be AlreadyExists"
    );
    assert_eq!(
        get(store, &k).await,
        b"winner",
        "a failed create must change nothing"
    );
    store.delete(&k).await.expect("delete");
    store
        .create(&k, b"again")
        .await
        .expect("create after delete");
    store.delete(&k).await.expect("delete");
}

/// Of eight concurrent creates of one key, exactly one wins, and the
/// object holds the winner's bytes.
pub async fn concurrent_creates_exactly_one_wins(store: &dyn Store) {
    let k = key("create/contested");
    let attempt = |n: u8| {
        let k = k.clone();
        async move { (n, store.create(&k, &[n; 4096]).await) }
    };
    let results = tokio::join!(
        attempt(0),
        attempt(1),
        attempt(2),
        attempt(3),
        attempt(4),
        attempt(5),
        attempt(6),
        attempt(7)
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    let winners: Vec<u8> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one concurrent create must win, not {winners:?}"
    );
    for (n, result) in &results {
        if let Err(e) = result {
            assert!(
                matches!(e, Error::AlreadyExists { .. }),
                "create {n} failed with {e} instead of AlreadyExists"
            );
        }
    }
    assert_eq!(
        get(store, &k).await,
        vec![winners[0]; 4096],
        "the object must hold the winner's bytes"
    );
    store.delete(&k).await.expect("delete");
}

/// `list` returns the keys under a prefix (whole names only), sorted.
pub async fn list_is_sorted_and_respects_prefixes(store: &dyn Store) {
    let names = [
        "list/b/2",
        "list/a",
        "list/b/10",
        "list/b/1",
        "list/bb",
        "list/b-c",
    ];
    for name in names {
        store
            .put_bytes(&key(name), name.as_bytes())
            .await
            .expect("put");
    }
    let under_b = store.list(Some(&key("list/b"))).await.expect("list");
    assert_eq!(
        under_b,
        vec![key("list/b/1"), key("list/b/10"), key("list/b/2")],
        "list of a prefix: keys under it, in byte order, not `list/bb` or `list/b-c`"
    );
    let all = store.list(Some(&key("list"))).await.expect("list");
    let mut expected: Vec<Key> = names.iter().map(|n| key(n)).collect();
    expected.sort();
    assert_eq!(
        all, expected,
        "list returns every key, sorted, without duplicates"
    );
    let everything = store.list(None).await.expect("list of everything");
    assert!(
        expected.iter().all(|k| everything.contains(k)),
        "list(None) includes every key"
    );
    assert!(
        everything.windows(2).all(|w| w[0] < w[1]),
        "list(None) is sorted"
    );
    for name in names {
        store.delete(&key(name)).await.expect("delete");
    }
    assert!(
        store
            .list(Some(&key("list")))
            .await
            .expect("list")
            .is_empty()
    );
}

/// A reader that yields `len` bytes of a pattern, then fails or ends.
struct Generated {
    remaining: u64,
    offset: u64,
    fail_at_end: bool,
}

fn pattern(offset: u64) -> u8 {
    (offset.wrapping_mul(31) ^ (offset >> 13)) as u8
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.remaining == 0 {
            if self.fail_at_end {
                return Poll::Ready(Err(std::io::Error::other("the source failed on purpose")));
            }
            return Poll::Ready(Ok(()));
        }
        let n = (buf.remaining() as u64).min(self.remaining).min(64 << 10) as usize;
        let offset = self.offset;
        let chunk: Vec<u8> = (0..n as u64).map(|i| pattern(offset + i)).collect();
        buf.put_slice(&chunk);
        self.offset += n as u64;
        self.remaining -= n as u64;
        Poll::Ready(Ok(()))
    }
}

/// A `put` whose source fails part-way returns an error and leaves the old
/// object whole; nothing half-written is visible or listed.
pub async fn failed_put_leaves_the_old_object(store: &dyn Store) {
    let k = key("atomic/object");
    store.put_bytes(&k, b"the old object").await.expect("put");
    let mut failing = Generated {
        remaining: 3 << 20,
        offset: 0,
        fail_at_end: true,
    };
    assert!(
        store.put(&k, &mut failing).await.is_err(),
        "a put whose source fails must fail"
    );
    assert_eq!(
        get(store, &k).await,
        b"the old object",
        "a failed put must leave the old object"
    );
    assert_eq!(
        store.list(Some(&key("atomic"))).await.expect("list"),
        vec![k.clone()],
        "no partial object is listed"
    );
    store.delete(&k).await.expect("delete");
}

/// An object of `size` bytes streams in and out intact, without the test
/// holding it in memory.
pub async fn large_objects_stream(store: &dyn Store, size: u64) {
    let k = key("large/object");
    let mut source = Generated {
        remaining: size,
        offset: 0,
        fail_at_end: false,
    };
    assert_eq!(
        store
            .put(&k, &mut source)
            .await
            .expect("put of a large object"),
        size
    );
    let mut reader = store.get(&k).await.expect("get of a large object");
    let mut buffer = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = reader
            .read(&mut buffer)
            .await
            .expect("reading a large object");
        if n == 0 {
            break;
        }
        for (i, byte) in buffer[..n].iter().enumerate() {
            assert_eq!(
                *byte,
                pattern(offset + i as u64),
                "byte {} of the large object differs",
                offset + i as u64
            );
        }
        offset += n as u64;
    }
    assert_eq!(offset, size, "the large object has the wrong length");
    store.delete(&k).await.expect("delete");
}

/// The checkpoint log works on this store: commits, loads, fencing, and two
/// concurrent commits of one generation of which exactly one wins.
pub async fn checkpoint_log_on_this_store(store: &dyn Store) {
    let log = CheckpointLog::new(store);
    let op = "conformance-log";
    let lease = log.claim(op).await.expect("claim");
    let mut generations = Vec::new();
    for i in 0..3u64 {
        let mut data: &[u8] = &[i as u8; 1000];
        let manifest = log
            .commit(
                &lease,
                serde_json::json!({ "i": i }),
                vec![Part::new("state", &mut data)],
            )
            .await
            .expect("commit");
        generations.push(manifest.generation());
    }
    assert!(
        generations[0] > lease.epoch() && generations.windows(2).all(|w| w[0] < w[1]),
        "generations count up after the claim: {generations:?}"
    );
    let latest = log
        .load_latest(op)
        .await
        .expect("load")
        .expect("a checkpoint");
    assert_eq!(latest.manifest.generation(), generations[2]);
    assert!(latest.warnings.is_empty());
    assert_eq!(
        log.retain(&lease, &[generations[0]]).await.expect("retain"),
        1
    );
    assert_eq!(
        log.checkpoints(op)
            .await
            .expect("list")
            .iter()
            .map(|m| m.generation())
            .collect::<Vec<_>>(),
        vec![generations[0], generations[2]]
    );

    // Two commits race for the next generation: one wins, one conflicts.
    let next = generations[2] + 1;
    let commit = |byte: u8| {
        let lease = lease.clone();
        let log = &log;
        async move {
            let data = [byte; 100];
            let mut source: &[u8] = &data;
            log.commit_generation(
                &lease,
                next,
                serde_json::json!({}),
                vec![Part::new("state", &mut source)],
            )
            .await
        }
    };
    let (a, b) = tokio::join!(commit(1), commit(2));
    let wins = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        wins, 1,
        "exactly one of two concurrent commits must win: {a:?} / {b:?}"
    );
    for result in [&a, &b] {
        if let Err(e) = result {
            assert!(
                matches!(e, Error::Conflict { .. }),
                "the loser must get Conflict, not {e}"
            );
        }
    }

    // A new lease fences the old one out.
    let _new = log.claim(op).await.expect("claim");
    let mut data: &[u8] = b"stale";
    let stale = log
        .commit(
            &lease,
            serde_json::json!({}),
            vec![Part::new("state", &mut data)],
        )
        .await;
    assert!(
        matches!(stale, Err(Error::Fenced { .. })),
        "a stale lease must be fenced: {stale:?}"
    );
    let latest = log
        .load_latest(op)
        .await
        .expect("load")
        .expect("a checkpoint");
    assert_eq!(
        latest.manifest.generation(),
        next,
        "a fenced commit changes nothing"
    );

    for key in store
        .list(Some(&Key::parse("ops/conformance-log").expect("key")))
        .await
        .expect("list")
    {
        store.delete(&key).await.expect("delete");
    }
}
