//! Keys and names: nothing a user supplies can reach outside the store.

use std::fmt;

use crate::error::{Error, Result};

/// The most bytes a name (one key segment) may have.
pub const MAX_NAME_LEN: usize = 128;

/// Checks one name: an operation id, a part name, or a key segment.
///
/// Allowed: 1 to 128 of `A-Z a-z 0-9 _ - . =`, not starting with `.`
/// (which rules out `.` and `..`, and hides backends' temporary files).
/// Separators, NUL, spaces and other characters are refused, so a name can
/// never climb out of the store's root or name a path elsewhere.
///
/// ```
/// use pragma_checkpoint::validate_name;
/// assert!(validate_name("train-2026_11.v2").is_ok());
/// assert!(validate_name("..").is_err());
/// assert!(validate_name("a/b").is_err());
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("a name cannot be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("a name has at most 128 bytes")
    } else if name.starts_with('.') {
        Some("a name cannot start with `.` (that includes `.` and `..`)")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'='))
    {
        Some("use only letters, digits, `_`, `-`, `.` and `=` (no separators, spaces or NUL)")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidName {
            name: name.chars().take(64).collect(),
            reason,
        }),
    }
}

/// A validated key: one or more names joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(String);

impl Key {
    /// Parses `a/b/c`, checking every segment with [`validate_name`].
    ///
    /// ```
    /// use pragma_checkpoint::Key;
    /// assert_eq!(Key::parse("ops/x/commits").unwrap().as_str(), "ops/x/commits");
    /// assert!(Key::parse("ops/../etc").is_err());
    /// assert!(Key::parse("/etc/passwd").is_err());
    /// ```
    pub fn parse(key: &str) -> Result<Self> {
        for segment in key.split('/') {
            validate_name(segment).map_err(|_| Error::InvalidName {
                name: key.chars().take(64).collect(),
                reason: "a key is names joined by `/`, each of letters, digits, `_`, `-`, `.` and `=`, not starting with `.`",
            })?;
        }
        Ok(Key(key.to_owned()))
    }

    /// A key from names, each checked.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut key = String::new();
        for name in names {
            validate_name(name)?;
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(name);
        }
        if key.is_empty() {
            return Err(Error::InvalidName {
                name: String::new(),
                reason: "a key needs at least one name",
            });
        }
        Ok(Key(key))
    }

    /// This key with one more name at the end.
    pub fn join(&self, name: &str) -> Result<Self> {
        validate_name(name)?;
        Ok(Key(format!("{}/{name}", self.0)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The names of the key, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether this key lies under `prefix` (or is it).
    pub fn starts_with(&self, prefix: &Key) -> bool {
        self.0 == prefix.0
            || (self.0.starts_with(&prefix.0)
                && self.0.as_bytes().get(prefix.0.len()) == Some(&b'/'))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
