//! The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
//! header length, a JSON header mapping each tensor name to its dtype, shape and byte range
//! (plus an optional `__metadata__` string map), then the raw little-endian data. We write it
//! ourselves so the bytes stream through a BLAKE3 hasher on their way to disk (one pass, no
//! second copy of a 700 MB state in memory) and are fsynced; reading goes through the
//! `safetensors` crate, so every file we write is also checked by the reference parser.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::fault;
use super::manifest::FileEntry;
use crate::error::{Error, Result};

/// Element types we store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
    Bool,
}

impl Dtype {
    /// The header's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F64 => "F64",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::U8 => "U8",
            Dtype::Bool => "BOOL",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn from_reader(dtype: ::safetensors::Dtype) -> Option<Self> {
        use ::safetensors::Dtype as D;
        Some(match dtype {
            D::F32 => Dtype::F32,
            D::F64 => Dtype::F64,
            D::F16 => Dtype::F16,
            D::BF16 => Dtype::BF16,
            D::I64 => Dtype::I64,
            D::I32 => Dtype::I32,
            D::U8 => Dtype::U8,
            D::BOOL => Dtype::Bool,
            _ => return None,
        })
    }
}

/// A named tensor as bytes on the host (row-major, little-endian).
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Writes `tensors` (any order; stored sorted by name) with `metadata` to `path`, fsynced, and
/// returns the file's size and BLAKE3.
pub fn write_tensors(
    path: &Path,
    tensors: &[RawTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<FileEntry> {
    let mut sorted: Vec<&RawTensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for t in &sorted {
        if t.data.len() != t.numel() * t.dtype.size_bytes() {
            return Err(Error::Tensor(format!(
                "tensor {} has {} bytes, its shape {:?} of {} needs {}",
                t.name,
                t.data.len(),
                t.shape,
                t.dtype.name(),
                t.numel() * t.dtype.size_bytes()
            )));
        }
    }
    let header = header_bytes(&sorted, metadata);
    let file = File::create(path).map_err(Error::io("create", path))?;
    let mut out = HashingWriter {
        // A small buffer: tensor data (megabytes) goes straight to the file without an extra
        // copy; only the header and small tensors are gathered.
        inner: BufWriter::with_capacity(64 << 10, file),
        hasher: blake3::Hasher::new(),
        bytes: 0,
    };
    let write = |out: &mut HashingWriter| -> std::io::Result<()> {
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(&header)?;
        for (i, t) in sorted.iter().enumerate() {
            out.write_all(&t.data)?;
            if i == 0 {
                out.inner.flush()?;
                fault::point("mid-file");
            }
        }
        out.inner.flush()?;
        out.inner.get_ref().sync_all()
    };
    write(&mut out).map_err(Error::io("write", path))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(FileEntry { name, bytes: out.bytes, blake3: out.hasher.finalize().to_hex().to_string() })
}

/// The JSON header, padded with spaces to a multiple of 8 bytes so the data is aligned.
fn header_bytes(sorted: &[&RawTensor], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let mut map = Map::new();
    if !metadata.is_empty() {
        map.insert("__metadata__".into(), json!(metadata));
    }
    let mut offset = 0usize;
    for t in sorted {
        let end = offset + t.data.len();
        map.insert(
            t.name.clone(),
            json!({ "dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header = serde_json::to_vec(&Value::Object(map)).expect("a JSON map always serialises");
    header.resize(header.len().div_ceil(8) * 8, b' ');
    header
}

struct HashingWriter {
    inner: BufWriter<File>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A tensor of an open file, borrowing its bytes from the mapping.
pub struct TensorView<'a> {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: &'a [u8],
}

/// A safetensors file opened for reading (memory-mapped).
pub struct TensorFile {
    path: std::path::PathBuf,
    map: memmap2::Mmap,
}

impl TensorFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(Error::io("open", path))?;
        // SAFETY: checkpoint files are never modified in place (only replaced by rename), so the
        // mapping cannot change under us while we read it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(Error::io("map", path))?;
        let file = TensorFile { path: path.to_path_buf(), map };
        file.parse()?;
        Ok(file)
    }

    fn parse(&self) -> Result<::safetensors::SafeTensors<'_>> {
        ::safetensors::SafeTensors::deserialize(&self.map)
            .map_err(|e| Error::Tensor(format!("{}: not a valid safetensors file: {e}", self.path.display())))
    }

    /// Every tensor, sorted by name, as borrowed views.
    pub fn tensors(&self) -> Result<Vec<TensorView<'_>>> {
        let parsed = self.parse()?;
        let mut out = Vec::new();
        for (name, view) in parsed.tensors() {
            let dtype = Dtype::from_reader(view.dtype()).ok_or_else(|| {
                Error::Tensor(format!(
                    "{}: tensor {name} has unsupported dtype {:?}",
                    self.path.display(),
                    view.dtype()
                ))
            })?;
            // The view borrows from `parsed`, which borrows the map; re-slice the map so the
            // bytes outlive the parsed header.
            let offset = view.data().as_ptr() as usize - self.map.as_ptr() as usize;
            let data = &self.map[offset..offset + view.data().len()];
            out.push(TensorView { name, dtype, shape: view.shape().to_vec(), data });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every tensor's shape, by name (the header alone: no tensor's bytes are read).
    pub fn shapes(&self) -> Result<super::Shapes> {
        Ok(self.parse()?.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect())
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> Result<BTreeMap<String, String>> {
        let (_, meta) = ::safetensors::SafeTensors::read_metadata(&self.map)
            .map_err(|e| Error::Tensor(format!("{}: {e}", self.path.display())))?;
        Ok(meta.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default())
    }
}

/// Reads a whole file into owned tensors (for small files and tests).
pub fn read_tensors(path: &Path) -> Result<Vec<RawTensor>> {
    let file = TensorFile::open(path)?;
    Ok(file
        .tensors()?
        .into_iter()
        .map(|v| RawTensor { name: v.name, dtype: v.dtype, shape: v.shape, data: v.data.to_vec() })
        .collect())
}
