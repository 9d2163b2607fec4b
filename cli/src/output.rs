//! Everything the command prints goes through here. A closed standard
//! output or error (a pipe into `head -0`, `/dev/full`) never panics and
//! never aborts the work: what cannot be written is dropped, and the
//! command goes on to its end and its usual exit code.

use std::fmt;
use std::io::Write;

/// Prints a line on standard output.
macro_rules! outln {
    () => { $crate::output::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::out(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints a line on standard error.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::output::err(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Prints on standard error, without a newline.
macro_rules! err {
    ($($arg:tt)*) => { $crate::output::err(format_args!($($arg)*)) };
}

/// Writes to standard output, flushed; a failure is dropped.
pub(crate) fn out(text: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.flush());
}

/// Writes to standard error; a failure is dropped.
pub(crate) fn err(text: fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(text);
}
