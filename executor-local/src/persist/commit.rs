//! Commits: a state streamed from the host's snapshot with its record, a
//! record alone, and the whole record an operation's chain of records adds
//! up to.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use pragma_checkpoint::{Lease, Manifest, Meta, Part, Store};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use crate::error::ExecError;
use crate::host::Host;
use crate::record::Record;
use crate::shared::Shared;

/// The whole record of an operation as of `latest`: a full record as it
/// is, a delta rebuilt from the full record it builds on and the deltas
/// after it.
pub(crate) fn whole_record(
    op: &str,
    checkpoints: &[Manifest],
    latest: &Manifest,
) -> Result<Record, ExecError> {
    let problem = |reason: String| ExecError::Operation {
        op: op.to_owned(),
        reason,
    };
    let parse = |manifest: &Manifest| {
        manifest.meta_as::<Record>().map_err(|e| {
            problem(format!(
                "its checkpoint was not written by this executor: {e}"
            ))
        })
    };
    let record = parse(latest)?;
    let Some(base) = record.base else {
        return Ok(record);
    };
    let full = checkpoints
        .iter()
        .find(|m| m.generation() == base)
        .ok_or_else(|| problem("the full record its latest record builds on is gone".to_owned()))?;
    let mut whole = parse(full)?;
    for manifest in checkpoints
        .iter()
        .filter(|m| m.generation() > base && m.generation() <= latest.generation())
    {
        whole.apply(parse(manifest)?, manifest.generation());
    }
    whole.base = None;
    Ok(whole)
}

/// Streams a state's snapshot into a commit whose meta is `record`.
pub(crate) async fn commit_state<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    part: &str,
    state: &H::State,
) -> Result<(u64, u64), ExecError> {
    let meta = Meta::from_serialize(record).map_err(|e| ExecError::State(io::Error::other(e)))?;
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let failed = Arc::new(Mutex::new(None));
    let mut reader = GuardedReader {
        inner: reader,
        failed: Arc::clone(&failed),
    };
    let snapshot = async {
        let result = shared.host.snapshot(state, &mut writer).await;
        let result = match result {
            Ok(()) => writer.shutdown().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && let Ok(mut slot) = failed.lock()
        {
            *slot = Some(e.to_string());
        }
        drop(writer);
        result
    };
    let commit = shared
        .log
        .commit(lease, meta, vec![Part::new(part, &mut reader)]);
    let (snapshot, commit) = tokio::join!(snapshot, commit);
    snapshot.map_err(ExecError::State)?;
    let manifest = commit?;
    Ok((manifest.generation(), manifest.bytes()))
}

/// Commits a record without data.
pub(crate) async fn commit_record<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
) -> Result<u64, ExecError> {
    let meta = Meta::from_serialize(record).map_err(|e| ExecError::State(io::Error::other(e)))?;
    Ok(shared
        .log
        .commit(lease, meta, Vec::new())
        .await?
        .generation())
}

/// A reader that fails at its end if the snapshot that feeds it failed, so
/// a half-written snapshot is never committed.
struct GuardedReader {
    inner: tokio::io::DuplexStream,
    failed: Arc<Mutex<Option<String>>>,
}

impl AsyncRead for GuardedReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled
            && buf.filled().len() == before
            && let Ok(failed) = self.failed.lock()
            && let Some(message) = failed.as_ref()
        {
            return Poll::Ready(Err(io::Error::other(format!(
                "the snapshot failed: {message}"
            ))));
        }
        polled
    }
}

/// Why a commit failed, and whether it was for want of room.
#[derive(Debug)]
pub(crate) struct CommitFailure {
    pub(crate) message: String,
    /// The store (or the disk the host's snapshot went to) is full: an
    /// operation stops rather than run on and lose more work.
    pub(crate) storage_full: bool,
}

impl std::fmt::Display for CommitFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ExecError> for CommitFailure {
    fn from(error: ExecError) -> Self {
        let message = error.to_string();
        let storage_full = match error {
            ExecError::Store(store) => store.is_storage_full(),
            // The host's own I/O (the snapshot it streams, a disk it
            // spills to) can meet a full disk too: asked as the store
            // would ask of an I/O error of its own.
            ExecError::State(io) => pragma_checkpoint::Error::io("", io).is_storage_full(),
            // None of the others has a storage error among its causes
            // (named, so that a new kind of failure is decided on here).
            ExecError::Directive(_)
            | ExecError::Unsaveable(_)
            | ExecError::Operation { .. }
            | ExecError::Stopped => false,
        };
        CommitFailure {
            message,
            storage_full,
        }
    }
}
