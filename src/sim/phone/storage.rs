//! The phone's flash memory: one raw file `DIR/<partition>.img` per partition.
//!
//! Keeping partitions as plain files lets tests compare the bytes a client wrote with the
//! image it sent. Names reach the file system only through the partition table built at
//! start, so a name sent by a host is looked up, never joined onto a path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::protocol::sparse::{self, Header, RegionSink, SparseError};

use super::ConfigError;

/// Longest partition name accepted in a configuration.
const MAX_NAME_LEN: usize = 64;
/// Where the last download is kept; the leading dot keeps it apart from `<name>.img`.
const DOWNLOAD_FILE: &str = ".download";
/// Size of the buffers that stream images between files.
const COPY_BUF_LEN: usize = 256 * 1024;

/// One entry of the partition table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Partition {
    /// Full name as the host addresses it (`boot`, or `boot_a` on an A/B phone).
    pub name: String,
    /// Size in bytes; the image file always has exactly this length.
    pub size: u64,
}

/// True if `name` may become a file name: 1 to 64 of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit (so `.`, `..` and hidden files are impossible).
pub(super) fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The partition files in one directory.
#[derive(Debug)]
pub(super) struct Storage {
    dir: PathBuf,
    table: Vec<Partition>,
}

impl Storage {
    /// Creates missing partition files (sparse, zero-filled) and keeps existing ones.
    ///
    /// An existing file of another size is refused rather than resized: silently
    /// truncating a partition would destroy what an earlier run stored.
    pub fn open(dir: &Path, table: Vec<Partition>) -> Result<Self, ConfigError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ConfigError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let storage = Storage {
            dir: dir.to_path_buf(),
            table,
        };
        for part in &storage.table {
            let path = storage.image_path(part);
            match fs::metadata(&path) {
                Ok(meta) if meta.len() == part.size => {}
                Ok(meta) => {
                    return Err(ConfigError::SizeMismatch {
                        path,
                        actual: meta.len(),
                        name: part.name.clone(),
                        declared: part.size,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    File::create(&path)
                        .and_then(|f| f.set_len(part.size))
                        .map_err(io_err(&path))?;
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        let download = storage.download_path();
        match fs::remove_file(&download) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&download)(e)),
            _ => {}
        }
        Ok(storage)
    }

    /// Looks a host-supplied name up in the table.
    pub fn get(&self, name: &str) -> Option<&Partition> {
        self.table.iter().find(|p| p.name == name)
    }

    /// All partitions, in declaration order.
    pub fn partitions(&self) -> &[Partition] {
        &self.table
    }

    /// The file holding `part`.
    pub fn image_path(&self, part: &Partition) -> PathBuf {
        self.dir.join(format!("{}.img", part.name))
    }

    fn download_path(&self) -> PathBuf {
        self.dir.join(DOWNLOAD_FILE)
    }

    /// Opens the download for writing at `offset`: 0 starts a new download over the
    /// previous one, more continues one whose first `offset` bytes are stored. The file is
    /// overwritten in place and cut to the new length only at the end ([`File::set_len`]):
    /// truncating first would free its pages and make every download pay to allocate them
    /// again, which on tmpfs or in a VM costs more than receiving the bytes.
    pub fn open_download_at(&self, offset: u64) -> io::Result<File> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.download_path())?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(file)
    }

    /// Opens the last download for reading.
    pub fn open_download(&self) -> io::Result<File> {
        File::open(self.download_path())
    }

    fn open_image(&self, part: &Partition) -> io::Result<File> {
        OpenOptions::new().write(true).open(self.image_path(part))
    }

    /// Opens a partition for reading and writing in place (the LP metadata on `super`).
    pub fn open_rw(&self, part: &Partition) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.image_path(part))
    }

    /// Writes `len` bytes of `src` at offset 0, streaming (the kernel copies file to file
    /// where it can); the rest of the partition is untouched. `meter` counts the bytes and
    /// may cut the write short.
    pub fn write_raw(
        &self,
        part: &Partition,
        src: impl Read,
        len: u64,
        meter: &mut Meter,
    ) -> io::Result<()> {
        if len > part.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{len} bytes do not fit partition {}", part.name),
            ));
        }
        let mut file = self.open_image(part)?;
        let allowed = meter.allowed(len);
        let copied = io::copy(&mut src.take(allowed), &mut file)?;
        meter.count(copied);
        if copied != allowed {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        cut_short(allowed, len)
    }

    /// Applies a sparse image at its block offsets: RAW and FILL chunks are written,
    /// DONT_CARE blocks keep what the partition held (each piece of a split image relies
    /// on that). `meter` counts the RAW and FILL bytes and may cut the write.
    pub fn write_sparse(
        &self,
        part: &Partition,
        src: impl Read,
        meter: &mut Meter,
    ) -> Result<Header, SparseError> {
        let mut sink = PartitionWriter {
            file: self.open_image(part)?,
            size: part.size,
            fill: Vec::new(),
            meter,
        };
        sparse::expand(src, &mut sink)
    }

    /// Sets every byte of the partition to zero.
    pub fn erase(&self, part: &Partition) -> io::Result<()> {
        let file = self.open_image(part)?;
        // Truncating and re-extending zero-fills without writing the whole size.
        file.set_len(0)?;
        file.set_len(part.size)
    }

    /// Reads up to `max` bytes from the start of the partition.
    pub fn read_prefix(&self, part: &Partition, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(max);
        File::open(self.image_path(part))?
            .take(max as u64)
            .read_to_end(&mut out)?;
        Ok(out)
    }
}

/// Counts the image bytes written into partitions and stops writing at a limit: how a
/// power cut from the fault plan lands at an exact byte.
#[derive(Debug)]
pub(super) struct Meter {
    /// Bytes that may still be written; `None` for no limit.
    left: Option<u64>,
    /// Bytes written through this meter.
    written: u64,
}

impl Meter {
    /// A meter that lets `limit` bytes through (`None`: any number).
    pub fn new(limit: Option<u64>) -> Meter {
        Meter {
            left: limit,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// How many of `len` bytes may be written before the limit.
    fn allowed(&self, len: u64) -> u64 {
        self.left.map_or(len, |left| left.min(len))
    }

    fn count(&mut self, n: u64) {
        self.written += n;
        if let Some(left) = &mut self.left {
            *left = left.saturating_sub(n);
        }
    }

    /// Writes `bytes`, or as many as the limit lets through followed by an error.
    pub fn write(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        let len = bytes.len() as u64;
        let allowed = self.allowed(len);
        // `allowed` is at most `bytes.len()`.
        file.write_all(&bytes[..allowed as usize])?;
        self.count(allowed);
        cut_short(allowed, len)
    }
}

/// The error that ends a write the meter cut at `allowed` of `len` bytes.
fn cut_short(allowed: u64, len: u64) -> io::Result<()> {
    if allowed < len {
        return Err(io::Error::other("power cut during the write"));
    }
    Ok(())
}

/// Writes the regions of an expanded sparse image into a partition file.
struct PartitionWriter<'a> {
    file: File,
    size: u64,
    /// The current FILL pattern repeated to [`COPY_BUF_LEN`] bytes.
    fill: Vec<u8>,
    meter: &'a mut Meter,
}

impl PartitionWriter<'_> {
    fn seek_to(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "region {offset}+{len} lies past the partition end at {}",
                    self.size
                ),
            ));
        }
        self.file.seek(SeekFrom::Start(offset)).map(drop)
    }
}

impl RegionSink for PartitionWriter<'_> {
    fn begin(&mut self, header: &Header) -> io::Result<()> {
        self.seek_to(0, header.expanded_len())
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.seek_to(offset, bytes.len() as u64)?;
        self.meter.write(&mut self.file, bytes)
    }

    fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        self.seek_to(offset, len)?;
        if self.fill.get(..4) != Some(&pattern[..]) {
            self.fill = pattern.repeat(COPY_BUF_LEN / 4);
        }
        let mut left = len;
        while left > 0 {
            let n = left.min(self.fill.len() as u64) as usize;
            self.meter.write(&mut self.file, &self.fill[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn skip(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.seek_to(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        for good in ["boot", "boot_a", "system.ext4", "modem-fw", "A1"] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".download",
            "../etc",
            "a/b",
            "a\\b",
            "x y",
            "é",
            "_x",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
        assert!(!is_valid_name(&"a".repeat(65)));
    }

    #[test]
    fn existing_files_are_kept_and_wrong_sizes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let table = vec![Partition {
            name: "boot".into(),
            size: 8192,
        }];
        let storage = Storage::open(dir.path(), table.clone()).unwrap();
        storage
            .write_raw(&table[0], &b"kept"[..], 4, &mut Meter::new(None))
            .unwrap();
        let again = Storage::open(dir.path(), table.clone()).unwrap();
        assert_eq!(again.read_prefix(&table[0], 4).unwrap(), b"kept");

        let bigger = vec![Partition {
            name: "boot".into(),
            size: 4096,
        }];
        assert!(matches!(
            Storage::open(dir.path(), bigger),
            Err(ConfigError::SizeMismatch {
                actual: 8192,
                declared: 4096,
                ..
            })
        ));
    }

    #[test]
    fn a_metered_raw_write_stops_at_exactly_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let part = Partition {
            name: "boot".into(),
            size: 8192,
        };
        let storage = Storage::open(dir.path(), vec![part.clone()]).unwrap();
        let mut meter = Meter::new(Some(1001));
        let err = storage
            .write_raw(&part, &[7u8; 4000][..], 4000, &mut meter)
            .unwrap_err();
        assert!(err.to_string().contains("power cut"), "{err}");
        assert_eq!(meter.written(), 1001);
        let bytes = storage.read_prefix(&part, 8192).unwrap();
        assert!(bytes[..1001].iter().all(|&b| b == 7));
        assert!(bytes[1001..].iter().all(|&b| b == 0));
    }

    #[test]
    fn sparse_regions_land_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let part = Partition {
            name: "system".into(),
            size: 4 * 4096,
        };
        let storage = Storage::open(dir.path(), vec![part.clone()]).unwrap();
        storage
            .write_raw(
                &part,
                &[0x55u8; 4 * 4096][..],
                4 * 4096,
                &mut Meter::new(None),
            )
            .unwrap();

        // DONT_CARE 1 block, RAW 1 block of 0xAB, FILL 1 block of 01 02 03 04, DONT_CARE 1.
        let mut image = Header::encode(4096, 4, 4).to_vec();
        let chunk = |kind: u16, blocks: u32, total: u32| {
            let mut c = kind.to_le_bytes().to_vec();
            c.extend_from_slice(&[0, 0]);
            c.extend_from_slice(&blocks.to_le_bytes());
            c.extend_from_slice(&total.to_le_bytes());
            c
        };
        image.extend(chunk(0xCAC3, 1, 12));
        image.extend(chunk(0xCAC1, 1, 12 + 4096));
        image.extend([0xAB; 4096]);
        image.extend(chunk(0xCAC2, 1, 16));
        image.extend([1, 2, 3, 4]);
        image.extend(chunk(0xCAC3, 1, 12));
        let mut meter = Meter::new(None);
        storage.write_sparse(&part, &image[..], &mut meter).unwrap();
        assert_eq!(
            meter.written(),
            2 * 4096,
            "RAW and FILL bytes count, DONT_CARE not"
        );

        let bytes = storage.read_prefix(&part, 4 * 4096).unwrap();
        assert!(bytes[..4096].iter().all(|&b| b == 0x55));
        assert!(bytes[4096..8192].iter().all(|&b| b == 0xAB));
        assert!(bytes[8192..12288].chunks(4).all(|c| c == [1, 2, 3, 4]));
        assert!(bytes[12288..].iter().all(|&b| b == 0x55));

        // A power cut 100 bytes into the FILL region: RAW done, 100 FILL bytes, rest old.
        storage
            .write_raw(
                &part,
                &[0x55u8; 4 * 4096][..],
                4 * 4096,
                &mut Meter::new(None),
            )
            .unwrap();
        let mut meter = Meter::new(Some(4096 + 100));
        assert!(storage.write_sparse(&part, &image[..], &mut meter).is_err());
        assert_eq!(meter.written(), 4096 + 100);
        let bytes = storage.read_prefix(&part, 4 * 4096).unwrap();
        assert!(bytes[4096..8192].iter().all(|&b| b == 0xAB));
        assert!(bytes[8192..8292].chunks(4).all(|c| c == [1, 2, 3, 4]));
        assert!(bytes[8292..].iter().all(|&b| b == 0x55));

        storage.erase(&part).unwrap();
        let bytes = storage.read_prefix(&part, 1 << 20).unwrap();
        assert_eq!(bytes.len(), 4 * 4096);
        assert!(bytes.iter().all(|&b| b == 0));
    }
}
