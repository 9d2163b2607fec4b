//! Following a running operation to its end, the one way every host does:
//! its events kept in the store's events file (what `pragma wait` and a
//! later kernel read), shown as they come, and its outcome.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use pragma_executor_local::{Event, ExecError, Handle, Outcome, Status};

/// How often the events file is flushed, and [`FollowObserver::tick`]
/// called.
pub const FOLLOW_TICK: Duration = Duration::from_millis(250);

/// What a host shows while it follows an operation
/// ([`Session::follow`](crate::Session::follow)). Both methods do nothing
/// by default; `()` shows nothing.
pub trait FollowObserver: Send {
    /// An event, with the status right after it.
    fn event(&mut self, _event: &Event, _status: &Status) {}

    /// Every [`FOLLOW_TICK`], the status.
    fn tick(&mut self, _status: &Status) {}
}

impl FollowObserver for () {}

/// Follows `handle` to its end: appends each event as a JSON line to
/// `events` (flushed every [`FOLLOW_TICK`] and at the end), tells
/// `observer`, and returns the outcome. A file that cannot be written
/// loses the events, never the operation.
pub(crate) async fn follow<State>(
    mut handle: Handle<State>,
    events: &Path,
    observer: &mut dyn FollowObserver,
) -> Result<Outcome<State>, ExecError> {
    if let Some(parent) = events.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(events)
        .map(std::io::BufWriter::new)
        .ok();
    let mut tick = tokio::time::interval(FOLLOW_TICK);
    loop {
        tokio::select! {
            event = handle.next_event() => {
                let Some(event) = event else { break };
                if let Some(file) = &mut file {
                    let line = serde_json::to_string(&event).unwrap_or_default();
                    // Flushed on the tick: a reader is a tick behind.
                    let _ = writeln!(file, "{line}");
                }
                observer.event(&event, &handle.status());
            }
            _ = tick.tick() => {
                if let Some(file) = &mut file {
                    let _ = file.flush();
                }
                observer.tick(&handle.status());
            }
        }
    }
    if let Some(file) = &mut file {
        let _ = file.flush();
    }
    handle.wait().await
}
