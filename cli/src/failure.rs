//! How a command ends: the exit codes of the `pragma` command, and why a
//! command stopped short.

/// Exit codes of the `pragma` command.
pub(crate) mod exit {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// The operation failed, or stopped because its store is full.
    pub(crate) const FAILED: u8 = 1;
    /// A usage error, an unreadable file or an invalid directive.
    pub(crate) const USAGE: u8 = 2;
    /// The result was applied except for conflicting files.
    pub(crate) const CONFLICTS: u8 = 3;
    /// A body asked for interactive input.
    pub(crate) const INTERRUPTED: u8 = 4;
    /// Suspended by a preemption notice (SIGTERM): what ran is kept, and
    /// the same command resumes it (75 is sysexits' "temporary failure,
    /// try again").
    pub(crate) const SUSPENDED: u8 = 75;
    /// Cancelled (Ctrl-C).
    pub(crate) const CANCELLED: u8 = 130;
}

/// Why a command stopped short: its exit code, and what to tell the user
/// (nothing when it was told already, as a directive's report is).
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: Option<String>,
}

impl Failure {
    /// A usage error, an unreadable file, an operation that is not there.
    pub(crate) fn usage(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::USAGE,
            message: Some(message.to_string()),
        }
    }

    /// The work failed.
    pub(crate) fn failed(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: exit::FAILED,
            message: Some(message.to_string()),
        }
    }

    /// Ends with `code`, the problem already told.
    pub(crate) fn reported(code: u8) -> Failure {
        Failure {
            code,
            message: None,
        }
    }
}

/// What every subcommand returns: its exit code, or why it stopped.
pub(crate) type Exit = Result<u8, Failure>;
