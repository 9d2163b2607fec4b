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

/// `text` with its control characters escaped (`\n`, `\u{1b}`…), for a
/// name that the user did not type into this message (a file of the
/// state, an id): it cannot forge a line or reach the terminal as an
/// escape sequence.
pub(crate) fn shown(text: &str) -> String {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text.to_owned()
    }
}

/// Writes to standard output, flushed; a failure is dropped.
pub(crate) fn out(text: fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|()| out.flush());
}

/// Writes to standard error, escape sequences escaped (what reaches a
/// terminal there is text, never a command to it); a failure is dropped.
pub(crate) fn err(text: fmt::Arguments<'_>) {
    let text = text.to_string();
    let text = if text.contains('\u{1b}') {
        text.replace('\u{1b}', "\\u{1b}")
    } else {
        text
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
