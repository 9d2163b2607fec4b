//! What only a host knows about its live state: how to capture it, digest
//! it variable by variable, and write a result back into it.

use std::collections::BTreeMap;
use std::io;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Digests of a state, by variable name: what the conflict check compares.
pub type Digests<D> = BTreeMap<String, D>;

/// One change to make to the live state when a result is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Set the variable to the result's value.
    Set(String),
    /// Remove the variable: the operation removed it.
    Remove(String),
}

impl Change {
    /// The variable it changes.
    pub fn name(&self) -> &str {
        match self {
            Change::Set(name) | Change::Remove(name) => name,
        }
    }
}

/// The live state of a host (a directory, a kernel's namespace), as the
/// lifecycle sees it: the host keeps working on it while an operation
/// runs in the background, and a finished result is applied to it.
///
/// # Contract
///
/// - [`identity`](LiveState::identity) is stable for the same live state
///   across processes (an absolute path, a notebook's path): the same cell
///   on the same identity resumes an interrupted operation instead of
///   starting another.
/// - [`capture`](LiveState::capture) returns the state to submit and the
///   digests of exactly that state; [`digests`](LiveState::digests) and
///   [`digests_of`](LiveState::digests_of) digest the same value the same
///   way, so an unchanged variable compares equal.
/// - [`apply`](LiveState::apply) makes every change or none: on an error
///   the live state is as it was. Errors name the variable (or file) and
///   say what failed.
#[async_trait]
pub trait LiveState: Send + Sync {
    /// The executor host's state type.
    type State: Clone + Send + Sync + 'static;
    /// A digest of one variable's value.
    type Digest: Clone + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// What identifies this live state, across processes and machines.
    fn identity(&self) -> String;

    /// The live state now, as a state to submit, with its digests.
    async fn capture(&self) -> io::Result<(Self::State, Digests<Self::Digest>)>;

    /// Digests of the live state now.
    async fn digests(&self) -> io::Result<Digests<Self::Digest>>;

    /// Digests of a state (an operation's result).
    async fn digests_of(&self, state: &Self::State) -> io::Result<Digests<Self::Digest>>;

    /// Applies `changes`, taking the values from `result`: all or nothing.
    async fn apply(&self, result: &Self::State, changes: &[Change]) -> io::Result<()>;
}
