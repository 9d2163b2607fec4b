//! What a commit records: its manifest (the parts, their lengths and
//! checksums, the caller's metadata, a checksum of the manifest itself),
//! encoded and decoded.

use super::*;

pub(super) const FORMAT: u32 = 1;
pub(super) const CHECKSUM_LINE: &str = "\ncrc32:";
/// How every claim's manifest starts (serde writes the fields in order).
pub(super) const CLAIM_PREFIX: &str = r#"{"format":1,"kind":"claim","#;

/// One data part of a commit: a name and the bytes, streamed.
pub struct Part<'a> {
    /// The part's name (see [`validate_name`]), unique within the commit.
    pub name: &'a str,
    /// Its bytes.
    pub data: Source<'a>,
}

impl<'a> Part<'a> {
    /// A part from a name and a reader.
    pub fn new(name: &'a str, data: Source<'a>) -> Self {
        Part { name, data }
    }
}

/// What a committed part holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// The part's name.
    pub name: String,
    /// Its length in bytes.
    pub len: u64,
    /// Its CRC-32 (IEEE).
    pub crc32: u32,
}

/// A committed checkpoint: what [`CheckpointLog::commit`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub(super) format: u32,
    #[serde(default)]
    pub(super) kind: RecordKind,
    pub(super) op: String,
    pub(super) generation: u64,
    pub(super) epoch: u64,
    pub(super) data: String,
    pub(super) parts: Vec<PartInfo>,
    pub(super) meta: Meta,
}

/// A checkpoint's metadata: JSON, kept as its text and parsed only when
/// asked. Reading the records of an operation to find claims or to clean
/// up then costs a scan of the text, not a tree of values per record.
///
/// Made from a [`serde_json::Value`] (`json!({...}).into()`), or from any
/// serialisable value with [`Meta::from_serialize`], which skips building
/// a `Value` first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Meta {
    pub(super) raw: Box<serde_json::value::RawValue>,
    #[serde(skip)]
    pub(super) parsed: std::sync::OnceLock<serde_json::Value>,
}

impl Meta {
    /// The metadata `value` serialises to.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Meta> {
        Ok(Meta {
            raw: serde_json::value::to_raw_value(value)?,
            parsed: std::sync::OnceLock::new(),
        })
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.raw.get()
    }

    /// The metadata as a JSON value, parsed on first use (`null` if the
    /// text does not parse, which a checked manifest never has).
    pub fn value(&self) -> &serde_json::Value {
        self.parsed
            .get_or_init(|| serde_json::from_str(self.raw.get()).unwrap_or_default())
    }

    /// The metadata as a `T`, parsed straight from the text.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.raw.get())
    }
}

impl PartialEq for Meta {
    fn eq(&self, other: &Meta) -> bool {
        self.raw.get() == other.raw.get()
    }
}

impl From<serde_json::Value> for Meta {
    fn from(value: serde_json::Value) -> Meta {
        let raw = serde_json::value::to_raw_value(&value)
            // A `Value` always serialises: its map keys are strings.
            .unwrap_or_else(|_| serde_json::value::RawValue::NULL.to_owned());
        Meta {
            raw,
            parsed: std::sync::OnceLock::from(value),
        }
    }
}

impl Manifest {
    /// The operation.
    pub fn op(&self) -> &str {
        &self.op
    }

    /// The generation: commits of an operation count up from 0.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The epoch of the writer.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The directory under `ops/OP/data/` that holds its parts (none is
    /// written for a commit without parts): for tools that check a store
    /// for data no checkpoint uses.
    pub fn data_dir(&self) -> &str {
        &self.data
    }

    /// The parts, in the order they were written.
    pub fn parts(&self) -> &[PartInfo] {
        &self.parts
    }

    /// The caller's metadata (iteration, score, the scheduler's and the
    /// selector's state, ...).
    pub fn meta(&self) -> &serde_json::Value {
        self.meta.value()
    }

    /// The caller's metadata as a `T`, parsed straight from its JSON text
    /// (cheaper than going through [`meta`](Self::meta) for a big record).
    pub fn meta_as<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        self.meta.parse()
    }

    /// All the parts' bytes.
    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.len).sum()
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec(self).map_err(|e| Error::Backend {
            store: "manifest",
            source: Box::new(e),
        })?;
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(format!("{CHECKSUM_LINE}{checksum:08x}\n").as_bytes());
        Ok(bytes)
    }

    pub(super) fn decode(bytes: &[u8]) -> std::result::Result<Manifest, String> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| "the manifest is not UTF-8".to_owned())?;
        let (body, checksum) = text
            .rsplit_once(CHECKSUM_LINE)
            .ok_or_else(|| "the manifest has no checksum line (truncated?)".to_owned())?;
        let expected = u32::from_str_radix(checksum.trim_end(), 16)
            .map_err(|_| "the manifest's checksum line is damaged".to_owned())?;
        if crc32fast::hash(body.as_bytes()) != expected {
            return Err("the manifest's checksum does not match".to_owned());
        }
        let manifest: Manifest =
            serde_json::from_str(body).map_err(|e| format!("the manifest does not parse: {e}"))?;
        if manifest.format != FORMAT {
            return Err(format!("unknown manifest format {}", manifest.format));
        }
        Ok(manifest)
    }
}

/// What a record in the sequence of generations is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RecordKind {
    /// A checkpoint.
    #[default]
    Checkpoint,
    /// A claim: a writer took the operation over from here on.
    Claim,
}
