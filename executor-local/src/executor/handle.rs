//! The caller's side of a submitted operation: its events, status, outcome
//! and cancellation.

use tokio::sync::{mpsc, oneshot, watch};

use super::ExecError;
use crate::coordinator::Msg;
use crate::report::{Event, Outcome, Status};

/// A submitted operation: its events, its status, and its outcome.
pub struct Handle<State> {
    // Built by `Executor::hand_over`, beside the coordinator's ends.
    pub(super) op: String,
    pub(super) events: mpsc::UnboundedReceiver<Event>,
    pub(super) status: watch::Receiver<Status>,
    pub(super) done: oneshot::Receiver<Outcome<State>>,
    pub(super) control: mpsc::UnboundedSender<Msg<State>>,
}

impl<State> Handle<State> {
    /// The operation's id (its name in the store).
    pub fn id(&self) -> &str {
        &self.op
    }

    /// The next event, in order; `None` once the operation has ended and
    /// every event was taken.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The events that are already there, without waiting.
    pub fn try_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// A view of the operation that other tasks can hold while this
    /// handle follows its events and waits for its outcome: its status
    /// and its cancel.
    pub fn observer(&self) -> Observer<State> {
        Observer {
            op: self.op.clone(),
            status: self.status.clone(),
            control: self.control.clone(),
        }
    }

    /// Cancels the operation: workers stop at once, the last checkpoint is
    /// kept, nothing is applied. Does nothing once it has ended.
    pub fn cancel(&self) {
        let _ = self.control.send(Msg::Cancel(self.op.clone()));
    }

    /// A preemption notice: the machine is going within `grace`. No
    /// iteration starts any more; those running may finish within
    /// `grace`, then are stopped; a repeat checkpoints its last finished
    /// iteration, whatever its checkpoint period. The operation ends
    /// [`FinalStatus::Suspended`](crate::FinalStatus::Suspended), nothing
    /// applied, and [`Executor::resume`](crate::Executor::resume) runs
    /// again only what was stopped. Does nothing once it has ended.
    pub fn suspend(&self, grace: std::time::Duration) {
        let _ = self.control.send(Msg::Suspend(self.op.clone(), grace));
    }

    /// Waits for the outcome.
    pub async fn wait(self) -> Result<Outcome<State>, ExecError> {
        // Nobody reads the events any more: let the executor stop making them.
        let Handle { done, events, .. } = self;
        drop(events);
        done.await.map_err(|_| ExecError::Stopped)
    }

    /// Waits for the outcome, and gives back the events too.
    pub async fn wait_with_events(mut self) -> Result<(Outcome<State>, Vec<Event>), ExecError> {
        let mut events = Vec::new();
        while let Some(event) = self.events.recv().await {
            events.push(event);
        }
        let outcome = self.done.await.map_err(|_| ExecError::Stopped)?;
        Ok((outcome, events))
    }
}

/// A view of a submitted operation ([`Handle::observer`]): its status and
/// its cancel, from any task, as often as wanted. Cheap to clone.
pub struct Observer<State> {
    op: String,
    status: watch::Receiver<Status>,
    control: mpsc::UnboundedSender<Msg<State>>,
}

impl<State> Clone for Observer<State> {
    fn clone(&self) -> Self {
        Observer {
            op: self.op.clone(),
            status: self.status.clone(),
            control: self.control.clone(),
        }
    }
}

impl<State> std::fmt::Debug for Observer<State> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("op", &self.op)
            .finish_non_exhaustive()
    }
}

impl<State> Observer<State> {
    /// The operation's id.
    pub fn id(&self) -> &str {
        &self.op
    }

    /// The status now (the last one, once the operation has ended).
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Cancels the operation, as [`Handle::cancel`] does.
    pub fn cancel(&self) {
        let _ = self.control.send(Msg::Cancel(self.op.clone()));
    }

    /// Suspends the operation, as [`Handle::suspend`] does.
    pub fn suspend(&self, grace: std::time::Duration) {
        let _ = self.control.send(Msg::Suspend(self.op.clone(), grace));
    }
}
