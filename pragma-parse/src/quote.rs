//! Quoting a value so that the word rules read it back unchanged.

use std::borrow::Cow;

/// Quotes `value` as one shell word, the way Python's `shlex.quote` does:
/// bare when every character is safe, otherwise in single quotes, with each
/// `'` written as `'"'"'`. A value starting with `-` is always quoted, so it
/// is never mistaken for an option.
///
/// ```
/// use pragma_parse::quote;
/// assert_eq!(quote("acc"), "acc");
/// assert_eq!(quote("f(x, y)"), "'f(x, y)'");
/// assert_eq!(quote("it's"), r#"'it'"'"'s'"#);
/// assert_eq!(quote(""), "''");
/// ```
pub fn quote(value: &str) -> Cow<'_, str> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !value.is_empty() && !value.starts_with('-') && value.chars().all(safe) {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(format!("'{}'", value.replace('\'', r#"'"'"'"#)))
    }
}
