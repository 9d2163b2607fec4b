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
use crate::record::Record;
use crate::shared::Shared;
use pragma_contract::Host;

/// The whole record of an operation as of `latest`: a full record as it
/// is, a delta rebuilt from the full record it builds on and the deltas
/// after it.
pub(crate) fn whole_record(
    op: &str,
    checkpoints: &[Manifest],
    latest: &Manifest,
) -> Result<Record, ExecError> {
    let problem = |problem: String| ExecError::Damaged {
        op: op.to_owned(),
        problem,
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

/// The `candidates` part of a commit: the parts of earlier commits of the
/// operation (streamed from the store, in order), then new candidates'
/// lines (see [`candidates`](super::candidates)).
#[derive(Default)]
pub(crate) struct CandidatesPart {
    pub(crate) earlier: Vec<u64>,
    pub(crate) new: Vec<u8>,
}

impl CandidatesPart {
    /// Only new candidates.
    pub(crate) fn new(new: Vec<u8>) -> Self {
        CandidatesPart {
            earlier: Vec::new(),
            new,
        }
    }

    fn is_empty(&self) -> bool {
        self.earlier.is_empty() && self.new.is_empty()
    }
}

/// Streams a state's snapshot into a commit whose meta is `record`, with
/// its candidates part.
pub(crate) async fn commit_state<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    part: &str,
    state: &H::State,
    candidates: &CandidatesPart,
) -> Result<(u64, u64), ExecError> {
    commit(shared, lease, record, Some((part, state)), candidates).await
}

/// Commits a record without a state, with its candidates part.
pub(crate) async fn commit_record<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    candidates: &CandidatesPart,
) -> Result<(u64, u64), ExecError> {
    commit(shared, lease, record, None, candidates).await
}

/// Commits `record` with a state's snapshot (if any) and candidates (if
/// any), each streamed into its part; a snapshot or earlier candidates
/// that cannot be read fail the commit, which then leaves nothing.
async fn commit<H: Host, S: Store>(
    shared: &Shared<H, S>,
    lease: &Lease,
    record: &Record,
    state: Option<(&str, &H::State)>,
    candidates: &CandidatesPart,
) -> Result<(u64, u64), ExecError> {
    let meta = Meta::from_serialize(record).map_err(|e| ExecError::State(io::Error::other(e)))?;
    let (mut writer, reader) = tokio::io::duplex(1 << 16);
    let failed = Arc::new(Mutex::new(None));
    let mut state_reader = GuardedReader {
        inner: reader,
        failed: Arc::clone(&failed),
    };
    let snapshot = async {
        let Some((_, state)) = state else {
            return Ok(());
        };
        let result = shared.host.snapshot(state, &mut writer).await;
        let result = match result {
            Ok(()) => writer.shutdown().await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && let Ok(mut slot) = failed.lock()
        {
            *slot = Some(format!("the snapshot failed: {e}"));
        }
        drop(writer);
        result
    };
    // Only new candidates go in as they are; earlier ones are streamed.
    let (candidates_writer, candidates_reader) = tokio::io::duplex(1 << 16);
    let candidates_failed = Arc::new(Mutex::new(None));
    let mut streamed = GuardedReader {
        inner: candidates_reader,
        failed: Arc::clone(&candidates_failed),
    };
    let mut new: &[u8] = &candidates.new;
    let stream_earlier = async {
        if candidates.earlier.is_empty() {
            return Ok(());
        }
        super::candidates::stream_into(
            shared,
            lease.op(),
            &candidates.earlier,
            &candidates.new,
            candidates_writer,
            Arc::clone(&candidates_failed),
        )
        .await
    };
    let mut parts = Vec::new();
    if let Some((name, _)) = state {
        parts.push(Part::new(name, &mut state_reader));
    }
    if !candidates.is_empty() {
        if candidates.earlier.is_empty() {
            parts.push(Part::new(super::candidates::PART, &mut new));
        } else {
            parts.push(Part::new(super::candidates::PART, &mut streamed));
        }
    }
    let commit = shared.log.commit(lease, meta, parts);
    let (snapshot, streamed, commit) = tokio::join!(snapshot, stream_earlier, commit);
    snapshot.map_err(ExecError::State)?;
    streamed?;
    let manifest = commit?;
    Ok((manifest.generation(), manifest.bytes()))
}

/// A reader that fails at its end if what feeds it (a snapshot, earlier
/// candidates) failed, so a part cut short is never committed.
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
            return Poll::Ready(Err(io::Error::other(message.clone())));
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
            | ExecError::UnknownOperation { .. }
            | ExecError::Damaged { .. }
            | ExecError::NotExtendable { .. }
            | ExecError::Stopped => false,
        };
        CommitFailure {
            message,
            storage_full,
        }
    }
}
