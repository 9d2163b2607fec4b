//! What the executor, the coordinator and every job share: the host, the
//! checkpoint log, the backend and the configuration.

use std::sync::Arc;

use pragma_checkpoint::CheckpointLog;

use crate::config::Config;
use pragma_contract::ExecutionBackend;

/// What the executor, the coordinator and every job share.
pub(crate) struct Shared<H, S> {
    pub(crate) host: H,
    pub(crate) log: CheckpointLog<S>,
    pub(crate) backend: Arc<dyn ExecutionBackend>,
    pub(crate) config: Config,
}
