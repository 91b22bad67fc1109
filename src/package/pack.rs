//! Building a signed package from a TOML manifest, image files and a signing key.
//!
//! Each image is read twice: once to hash it (and, for sparse images, validate every
//! chunk) so the signed manifest can be written first, and once to copy it, re-hashing as
//! it goes so a file changed in between fails the pack instead of producing a package that
//! can never verify. Output goes to a temporary file in the destination directory that is
//! renamed over `out` only when complete, so `out` never holds a half-written package.
//!
//! Image files must be regular files named by a relative path inside the manifest's
//! directory; symbolic links are refused, so what gets signed is exactly what is in the
//! release directory and cannot silently follow a link elsewhere.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::container::{self, Header, SignatureEntry, MAX_MANIFEST_LEN};
use super::keys::SecretKey;
use super::manifest::{Image, ImageBlocks, SourceManifest, SparseInfo};
use super::reader::BUFFER_LEN;
use super::verify::file_kind;
use super::{KeyId, Manifest, PackageError, Sha256Sum};
use crate::hashing::{BlockDigests, BlockHashes};
use crate::protocol::sparse;

/// What `pack` produced.
#[derive(Debug, Clone, Serialize)]
pub struct PackSummary {
    /// Where the package was written.
    pub path: PathBuf,
    /// The signed manifest as written.
    pub manifest: Manifest,
    /// Id of the signing key.
    pub key_id: KeyId,
    /// Total package size in bytes.
    pub package_size: u64,
    /// sha256 of the whole package file, for release notes.
    pub package_sha256: Sha256Sum,
    /// sha256 of the signed manifest: the package's identity in flashline's reports.
    pub manifest_sha256: Sha256Sum,
}

/// Packs the images listed in `manifest_toml` into one package at `out`, signed with the
/// secret key in `key_file`.
pub fn pack(
    manifest_toml: &Path,
    key_file: &Path,
    out: &Path,
) -> Result<PackSummary, PackageError> {
    let source = read_source(manifest_toml)?;
    let base = match manifest_toml.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    pack_source(source, base, key_file, out)
}

/// Packs a source manifest whose image files are relative to `base`: the part of
/// [`pack`] after the TOML is read, shared with packers that build the manifest themselves
/// (factory images).
pub(crate) fn pack_source(
    source: SourceManifest,
    base: &Path,
    key_file: &Path,
    out: &Path,
) -> Result<PackSummary, PackageError> {
    source.validate()?;
    let key = SecretKey::load(key_file)?;
    let mut sources = Sources::new(base);
    let zxic = match &source.zxic {
        Some(zxic) => Some(super::zxic::build(zxic, &mut sources)?),
        None => None,
    };
    let unisoc = match &source.unisoc {
        Some(unisoc) => Some(super::unisoc::build(unisoc, &mut sources)?),
        None => None,
    };
    let qualcomm = match &source.qualcomm {
        Some(qualcomm) => Some(super::qualcomm::build(qualcomm, &mut sources)?),
        None if zxic.is_some() || unisoc.is_some() => None,
        None => {
            // Phones take sparse images; EDL programs raw ranges (and skips equal ones).
            sources.sparsify = true;
            for entry in &source.image {
                let index = sources.add(&entry.partition, &entry.file)?;
                let image = &mut sources.images[index];
                image.logical = entry.logical;
                image.reboot_bootloader = entry.reboot_bootloader;
            }
            None
        }
    };
    // The super_empty.img is stored last, after the images.
    let dynamic = match &source.dynamic {
        Some(dynamic) => Some(super::dynamic::describe(
            &mut sources,
            &dynamic.super_empty,
            source
                .image
                .iter()
                .filter(|i| i.logical)
                .map(|i| i.partition.as_str()),
        )?),
        None => None,
    };
    let Sources {
        mut files,
        mut images,
        encodings,
        ..
    } = sources;
    if dynamic.is_some() {
        images.pop();
    }

    let requires = source.requirements();
    let manifest = Manifest {
        name: source.name,
        version: source.version,
        security_version: source.security_version,
        min_battery_percent: source.min_battery_percent,
        description: source.description,
        requires,
        targets: source.target,
        images,
        qualcomm,
        dynamic,
        zxic,
        unisoc,
        signer: key.public().id(),
    };
    manifest.validate()?;
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| PackageError::ManifestInvalid(e.to_string()))?;
    if manifest_bytes.len() as u64 > MAX_MANIFEST_LEN {
        return Err(PackageError::ManifestTooLarge {
            size: manifest_bytes.len() as u64,
            max: MAX_MANIFEST_LEN,
        });
    }
    let signature = SignatureEntry {
        key_id: key.public().id(),
        signature: key
            .sign(&container::signed_message(&manifest_bytes))
            .to_bytes(),
    };
    let manifest_sha256 = Sha256Sum(Sha256::digest(&manifest_bytes).into());
    let header = Header {
        manifest_len: manifest_bytes.len() as u64,
        signature_count: 1,
    };

    let mut temp = TempFile::create(out)?;
    let mut writer = HashingWriter::new(&mut temp.file);
    let io_out = PackageError::io(out);
    let prefix = [&header.encode()[..], &manifest_bytes, &signature.encode()].concat();
    writer.write_all(&prefix).map_err(io_out)?;
    // The super_empty.img (stored last) has no encoding: it is copied as it is.
    for (index, ((path, file), image)) in files.iter_mut().zip(manifest.stored()).enumerate() {
        match encodings.get(index).and_then(Option::as_ref) {
            Some(encoding) => encoding.copy(path, file, image, &mut writer, out)?,
            None => copy_image(path, file, image, &mut writer, out)?,
        }
    }
    let (package_size, package_sha256) = writer.finish();
    temp.persist(out)?;
    tracing::info!(path = %out.display(), sha256 = %package_sha256, "package written");
    Ok(PackSummary {
        path: out.to_owned(),
        key_id: manifest.signer,
        manifest,
        package_size,
        package_sha256,
        manifest_sha256,
    })
}

/// The image files of a package being packed: described (hashed) in package order and
/// held open for the copy pass.
pub(crate) struct Sources {
    base: PathBuf,
    files: Vec<(PathBuf, File)>,
    images: Vec<Image>,
    /// For each image, the sparse form it is stored in, if it was raw and became sparse.
    encodings: Vec<Option<SparseEncoding>>,
    /// Whether raw images with uniform blocks are stored as sparse images.
    sparsify: bool,
}

impl Sources {
    fn new(base: &Path) -> Self {
        Sources {
            base: base.to_owned(),
            files: Vec::new(),
            images: Vec::new(),
            encodings: Vec::new(),
            sparsify: false,
        }
    }

    /// Describes `file` (relative to the manifest) as the image for `partition` and
    /// returns its image number.
    pub(crate) fn add(&mut self, partition: &str, file: &str) -> Result<usize, PackageError> {
        let path = image_path(&self.base, file)?;
        let (mut handle, mut image) = describe_image(&path, partition, file)?;
        let encoding = match image.sparse {
            None if self.sparsify => SparseEncoding::of(&path, &mut handle, &mut image)?,
            _ => None,
        };
        self.files.push((path, handle));
        self.images.push(image);
        self.encodings.push(encoding);
        Ok(self.images.len() - 1)
    }

    /// Image number `index`, as returned by [`Sources::add`].
    pub(crate) fn image(&self, index: usize) -> &Image {
        &self.images[index]
    }

    /// Reads image `index` whole from the handle it was hashed through, proving the bytes
    /// are the described ones. For small files only: the caller caps the size first.
    pub(crate) fn read_whole(&mut self, index: usize) -> Result<Vec<u8>, PackageError> {
        let (path, file) = &mut self.files[index];
        let image = &self.images[index];
        let io = PackageError::io(path.as_path());
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(image.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(PackageError::io(path.as_path()))?;
        if bytes.len() as u64 != image.size
            || Sha256Sum(Sha256::digest(&bytes).into()) != image.sha256
        {
            return Err(PackageError::ImageChanged {
                partition: image.partition.clone(),
            });
        }
        Ok(bytes)
    }
}

/// Reads and checks the TOML manifest (capped like the signed one).
fn read_source(path: &Path) -> Result<SourceManifest, PackageError> {
    let file = File::open(path).map_err(PackageError::io(path))?;
    let mut text = String::new();
    file.take(MAX_MANIFEST_LEN + 1)
        .read_to_string(&mut text)
        .map_err(PackageError::io(path))?;
    if text.len() as u64 > MAX_MANIFEST_LEN {
        return Err(PackageError::ManifestTooLarge {
            size: text.len() as u64,
            max: MAX_MANIFEST_LEN,
        });
    }
    let source: SourceManifest =
        toml::from_str(&text).map_err(|e| PackageError::ManifestTomlInvalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok(source)
}

/// Resolves an image's `file` under `base`, allowing only plain relative components.
fn image_path(base: &Path, file: &str) -> Result<PathBuf, PackageError> {
    let relative = Path::new(file);
    let plain = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !plain || file.contains('\\') {
        return Err(PackageError::ImagePathInvalid(file.to_owned()));
    }
    Ok(base.join(relative))
}

/// First pass over one image file: size, sha256 and, if sparse, its validated header.
fn describe_image(
    path: &Path,
    partition: &str,
    display: &str,
) -> Result<(File, Image), PackageError> {
    let io = |e| PackageError::Io {
        path: path.to_owned(),
        source: e,
    };
    let link_meta = path.symlink_metadata().map_err(io)?;
    if !link_meta.is_file() {
        return Err(PackageError::NotARegularFile {
            path: path.to_owned(),
            kind: file_kind(&link_meta),
        });
    }
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PackageError::NotARegularFile {
            path: path.to_owned(),
            kind: file_kind(&meta),
        });
    }
    if meta.len() == 0 {
        return Err(PackageError::EmptyImage {
            partition: partition.to_owned(),
        });
    }

    let mut magic = [0u8; 4];
    let magic_len = read_up_to(&mut file, &mut magic).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let block = BlockHashes::signed_block_size(meta.len());
    let mut hashing =
        HashingReader::new(BufReader::with_capacity(BUFFER_LEN, &mut file)).with_blocks(block);
    let sparse = if sparse::looks_sparse(&magic[..magic_len]) {
        let header = sparse::expand(&mut hashing, &mut sparse::Validate).map_err(|source| {
            PackageError::SparseInvalid {
                partition: partition.to_owned(),
                source,
            }
        })?;
        let consumed = hashing.count;
        io::copy(&mut hashing, &mut io::sink()).map_err(io)?;
        if hashing.count > consumed {
            return Err(PackageError::SparseTrailingData {
                partition: partition.to_owned(),
                extra: hashing.count - consumed,
            });
        }
        Some(SparseInfo {
            blk_sz: header.blk_sz,
            total_blks: header.total_blks,
            expanded_size: header.expanded_len(),
        })
    } else {
        io::copy(&mut hashing, &mut io::sink()).map_err(io)?;
        None
    };
    let blocks = hashing.blocks.take().map(image_blocks);
    let (size, sha256) = hashing.finish();
    if size != meta.len() {
        return Err(PackageError::ImageChanged {
            partition: partition.to_owned(),
        });
    }
    let image = Image {
        partition: partition.to_owned(),
        file: display.to_owned(),
        size,
        sha256,
        sparse,
        logical: false,
        reboot_bootloader: false,
        blocks,
    };
    Ok((file, image))
}

/// A raw image stored as an Android sparse image: every 4096-byte block whose 32-bit words
/// are all equal (zeros included) becomes a FILL chunk, the rest RAW, as `img2simg` does.
/// The sparse form is what is signed and sent: a phone receives 16 bytes per run of uniform
/// blocks instead of the blocks. No DONT_CARE is made from zero blocks: it would leave the
/// partition's old bytes where the raw image has zeros, so the device would no longer hold
/// the image that was signed; a FILL of zeros costs as little on the wire.
///
/// Only images that are a whole number of blocks, have at least one uniform block and
/// encode into one sparse file of at most 4 GiB are converted; the others stay raw.
struct SparseEncoding {
    layout: sparse::Layout,
    piece: sparse::Piece,
    /// sha256 of the raw file the layout was scanned from: every encoding pass re-reads it
    /// whole and must find the same bytes.
    raw: (u64, Sha256Sum),
}

impl SparseEncoding {
    /// Scans the raw image described by `image` and, if it is worth it, describes it anew
    /// as its sparse form (size, sha256, block hashes, sparse record).
    fn of(path: &Path, file: &mut File, image: &mut Image) -> Result<Option<Self>, PackageError> {
        if !image.size.is_multiple_of(u64::from(sparse::RAW_BLOCK_SIZE)) {
            return Ok(None);
        }
        let io = PackageError::io(path);
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let reader = BufReader::with_capacity(BUFFER_LEN, &mut *file);
        let layout =
            sparse::scan_raw(reader, image.size).map_err(|source| PackageError::SparseInvalid {
                partition: image.partition.clone(),
                source,
            })?;
        let uniform = layout
            .chunks
            .iter()
            .any(|c| matches!(c.data, sparse::ChunkData::Fill(_)));
        let pieces = sparse::split(&layout, u64::from(u32::MAX)).ok();
        let (true, Some([piece])) = (uniform, pieces.as_deref()) else {
            return Ok(None);
        };
        let encoding = SparseEncoding {
            piece: piece.clone(),
            layout,
            raw: (image.size, image.sha256),
        };
        let expanded = encoding.layout.total_blks;
        let mut out = HashingWriter::new(io::sink());
        out.blocks = Some(BlockDigests::new(BlockHashes::signed_block_size(
            encoding.piece.encoded_len(),
        ) as usize));
        encoding.encode(path, file, image, &mut out)?;
        let blocks = out.blocks.take().map(image_blocks);
        let (size, sha256) = out.finish();
        *image = Image {
            size,
            sha256,
            sparse: Some(SparseInfo {
                blk_sz: sparse::RAW_BLOCK_SIZE,
                total_blks: expanded,
                expanded_size: u64::from(expanded) * u64::from(sparse::RAW_BLOCK_SIZE),
            }),
            blocks,
            ..image.clone()
        };
        tracing::info!(
            partition = %image.partition,
            raw = encoding.raw.0,
            sparse = size,
            "raw image stored as a sparse image"
        );
        Ok(Some(encoding))
    }

    /// Writes the sparse form to `out`, re-reading the raw file, which must be unchanged.
    fn encode(
        &self,
        path: &Path,
        file: &mut File,
        image: &Image,
        out: &mut impl Write,
    ) -> Result<(), PackageError> {
        file.seek(SeekFrom::Start(0))
            .map_err(PackageError::io(path))?;
        let mut raw = HashingReader::new(
            BufReader::with_capacity(BUFFER_LEN, &mut *file).take(self.raw.0.saturating_add(1)),
        );
        let mut cursor = sparse::SourceCursor::new(&mut raw);
        let mut scratch = vec![0u8; BUFFER_LEN];
        let written = self
            .piece
            .write(&self.layout, &mut cursor, out, &mut scratch)
            .map_err(|source| PackageError::SparseInvalid {
                partition: image.partition.clone(),
                source,
            })
            .and_then(|()| {
                cursor
                    .drain_to_end()
                    .map_err(|_| PackageError::ImageChanged {
                        partition: image.partition.clone(),
                    })
            });
        written?;
        if raw.finish() != self.raw {
            return Err(PackageError::ImageChanged {
                partition: image.partition.clone(),
            });
        }
        Ok(())
    }

    /// The copy pass: the sparse form again, into the package, proved equal to the first.
    fn copy(
        &self,
        path: &Path,
        file: &mut File,
        image: &Image,
        out: &mut impl Write,
        out_path: &Path,
    ) -> Result<(), PackageError> {
        let mut hashing = HashingWriter::new(out);
        self.encode(path, file, image, &mut hashing)
            .map_err(|e| match e {
                PackageError::SparseInvalid {
                    source: sparse::SparseError::Io(e),
                    ..
                } => PackageError::io(out_path)(e),
                e => e,
            })?;
        if hashing.finish() != (image.size, image.sha256) {
            return Err(PackageError::ImageChanged {
                partition: image.partition.clone(),
            });
        }
        Ok(())
    }
}

/// Second pass: copies the image into the package, proving it is unchanged since hashing.
fn copy_image(
    path: &Path,
    file: &mut File,
    image: &Image,
    out: &mut impl Write,
    out_path: &Path,
) -> Result<(), PackageError> {
    let io_in = PackageError::io(path);
    file.seek(SeekFrom::Start(0)).map_err(io_in)?;
    let mut source = HashingReader::new(file.take(image.size.saturating_add(1)));
    let mut buf = vec![0u8; BUFFER_LEN];
    loop {
        let n = source.read(&mut buf).map_err(PackageError::io(path))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(PackageError::io(out_path))?;
    }
    if source.finish() != (image.size, image.sha256) {
        return Err(PackageError::ImageChanged {
            partition: image.partition.clone(),
        });
    }
    Ok(())
}

/// Reads until `buf` is full or the reader ends.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Counts and hashes everything read through it, whole and, if asked, block by block.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    blocks: Option<BlockDigests>,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            blocks: None,
        }
    }

    /// Also takes the hashes of `block`-byte blocks.
    fn with_blocks(mut self, block: u32) -> Self {
        self.blocks = Some(BlockDigests::new(block as usize));
        self
    }

    fn finish(self) -> (u64, Sha256Sum) {
        (self.count, Sha256Sum(self.hasher.finalize().into()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(blocks) = &mut self.blocks {
            blocks.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

/// The signed form of block hashes taken while packing.
fn image_blocks(digests: BlockDigests) -> ImageBlocks {
    let hashes = digests.finish();
    ImageBlocks {
        size: hashes.block() as u32,
        sha256: hashes.hashes().iter().map(hex::encode).collect(),
    }
}

/// Counts and hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
    blocks: Option<BlockDigests>,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
            blocks: None,
        }
    }

    fn finish(self) -> (u64, Sha256Sum) {
        (self.count, Sha256Sum(self.hasher.finalize().into()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(blocks) = &mut self.blocks {
            blocks.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A uniquely named file next to the destination, removed unless persisted.
struct TempFile {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempFile {
    fn create(out: &Path) -> Result<Self, PackageError> {
        let dir = match out.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let stem = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let nonce: [u8; 8] = super::random().map_err(PackageError::io(out))?;
        let path = dir.join(format!(".{stem}.{}.partial", hex::encode(nonce)));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(PackageError::io(&path))?;
        Ok(TempFile {
            path,
            file,
            persisted: false,
        })
    }

    /// Flushes to disk and renames over `out`.
    fn persist(mut self, out: &Path) -> Result<(), PackageError> {
        self.file.sync_all().map_err(PackageError::io(&self.path))?;
        std::fs::rename(&self.path, out).map_err(PackageError::io(out))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
