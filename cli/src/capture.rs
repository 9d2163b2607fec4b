//! What a shell prints, captured with bounded memory: each stream goes to
//! its log file as it comes (at most [`LOG_CAP`] bytes a run; the excess is
//! counted and noted at the end of the log), and only its last
//! [`TAIL`] bytes stay in memory, for the error message or the score.
//!
//! A run ends when its shell exits. What it left running in the background
//! is killed then (by the caller, with its process group), so the pipes
//! close; output that an escaped process still holds open is not waited
//! for beyond [`GRACE`].

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The most a run's log keeps of one stream.
pub(crate) const LOG_CAP: u64 = 16 << 20;

/// How much of the end of a stream is kept in memory.
pub(crate) const TAIL: usize = 64 << 10;

/// How long the output of a shell that exited is read on before it is
/// left: a process that escaped the group may hold the pipe open for good.
pub(crate) const GRACE: Duration = Duration::from_millis(500);

/// Where one stream goes.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    /// The log file, created at the first byte (most bodies print
    /// nothing, and every file created costs time).
    log: Option<PathBuf>,
    file: Option<tokio::fs::File>,
    /// Bytes written to the log, and bytes beyond the cap.
    kept: u64,
    dropped: u64,
    /// The last bytes of the stream.
    tail: Vec<u8>,
}

impl Capture {
    /// A stream kept in the log file `path` (and its tail in memory).
    pub(crate) fn to_log(path: PathBuf) -> Capture {
        Capture {
            log: Some(path),
            ..Capture::default()
        }
    }

    /// A stream of which only the tail is kept.
    pub(crate) fn tail_only() -> Capture {
        Capture::default()
    }

    async fn take(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * TAIL {
            self.tail.drain(..self.tail.len() - TAIL);
        }
        let Some(path) = &self.log else { return };
        let room = LOG_CAP.saturating_sub(self.kept);
        let (keep, drop) = bytes.split_at((room as usize).min(bytes.len()));
        self.dropped += drop.len() as u64;
        if keep.is_empty() {
            return;
        }
        if self.file.is_none() {
            // A failure to keep the log only costs the log.
            if let Some(parent) = path.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            self.file = tokio::fs::File::create(path).await.ok();
        }
        if let Some(file) = &mut self.file
            && file.write_all(keep).await.is_ok()
        {
            self.kept += keep.len() as u64;
        }
    }

    /// Notes in the log what it did not keep; `left` says the stream was
    /// still open when the run ended.
    async fn close(&mut self, left: bool) {
        let Some(file) = &mut self.file else { return };
        let mut note = String::new();
        if self.dropped > 0 {
            note.push_str(&format!(
                "\n[pragma: {} more bytes not kept: a run's log keeps at most {} MiB of each stream]\n",
                self.dropped,
                LOG_CAP >> 20
            ));
        }
        if left {
            note.push_str(
                "\n[pragma: the run ended before this stream closed; what came after is not kept]\n",
            );
        }
        let _ = file.write_all(note.as_bytes()).await;
        let _ = file.flush().await;
    }

    /// The last line of the stream that is not blank.
    pub(crate) fn last_line(&self) -> String {
        String::from_utf8_lossy(&self.tail)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_owned()
    }
}

/// Reads `pipe` into `capture` until it closes or `stop` fires.
async fn pump(
    mut pipe: impl AsyncRead + Unpin,
    mut capture: Capture,
    stop: CancellationToken,
) -> Capture {
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = tokio::select! {
            read = pipe.read(&mut buffer) => read,
            () = stop.cancelled() => {
                capture.close(true).await;
                return capture;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => capture.take(&buffer[..n]).await,
        }
    }
    capture.close(false).await;
    capture
}

/// The readers of a child's standard output and error.
pub(crate) struct Pumps {
    out: Option<JoinHandle<Capture>>,
    err: Option<JoinHandle<Capture>>,
    stop: CancellationToken,
}

impl Pumps {
    /// Starts reading `child`'s piped standard output into `out` and its
    /// standard error into `err`.
    pub(crate) fn start(child: &mut Child, out: Capture, err: Capture) -> Pumps {
        let stop = CancellationToken::new();
        let out = child
            .stdout
            .take()
            .map(|pipe| tokio::spawn(pump(pipe, out, stop.clone())));
        let err = child
            .stderr
            .take()
            .map(|pipe| tokio::spawn(pump(pipe, err, stop.clone())));
        Pumps { out, err, stop }
    }

    /// What was captured, once the child exited and its group was killed:
    /// the streams are read until they close, or for [`GRACE`] at most.
    pub(crate) async fn finish(mut self) -> (Capture, Capture) {
        let (out, err) = (self.out.take(), self.err.take());
        let both = async {
            let out = match out {
                Some(out) => out.await.unwrap_or_default(),
                None => Capture::default(),
            };
            let err = match err {
                Some(err) => err.await.unwrap_or_default(),
                None => Capture::default(),
            };
            (out, err)
        };
        tokio::pin!(both);
        tokio::select! {
            captured = &mut both => captured,
            () = tokio::time::sleep(GRACE) => {
                self.stop.cancel();
                both.await
            }
        }
    }
}

impl Drop for Pumps {
    fn drop(&mut self) {
        // A run cut short (cancelled, interrupted) reads no more.
        self.stop.cancel();
    }
}
