//! Opening a package (structure only) and verifying it (signatures, then every byte).
//!
//! The two steps are two types: a [`Package`] has been parsed but nothing in it is trusted;
//! a [`VerifiedPackage`] can only come out of [`Package::verify`], so holding one is proof
//! that its manifest is signed by a trusted key and that every image matched when checked.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ed25519_dalek::Signature;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::container::{self, Extent, Header, SignatureEntry, HEADER_LEN, SIGNATURE_ENTRY_LEN};
use super::qualcomm::QualcommPlan;
use super::reader::{fill_at, stream_at, BUFFER_LEN};
use super::trust::{KeyScope, TrustStore};
use super::{ImageReader, KeyId, Manifest, PackageError, PlanningReader, Sha256Sum};
use crate::hashing::BlockHashes;
use crate::protocol::sparse;

/// A parsed but unverified package. Its manifest may be shown (`inspect`), never acted on.
pub struct Package {
    file: File,
    path: PathBuf,
    file_len: u64,
    manifest_bytes: Vec<u8>,
    manifest: Manifest,
    signatures: Vec<SignatureEntry>,
    extents: Vec<Extent>,
    /// sha256 of everything before the first image, as parsed; verify re-reads and compares.
    prefix_digest: [u8; 32],
}

/// Who signed a verified package, as this computer's trust store knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signer {
    /// The key's id.
    pub key_id: KeyId,
    /// The name from the trusted `.pub` file (never from the package).
    pub name: String,
    /// What the key may sign for; the engine refuses [`KeyScope::VirtualOnly`] on real devices.
    pub scope: KeyScope,
}

/// A package whose signature and image hashes have been checked.
///
/// Keeps the handle it was verified through; images are read from it by position, never by
/// reopening the path.
#[derive(Debug)]
pub struct VerifiedPackage {
    file: Arc<File>,
    path: PathBuf,
    manifest: Manifest,
    extents: Vec<Extent>,
    signer: Signer,
    manifest_sha256: Sha256Sum,
    /// Bytes hashed by the image readers opened from it (see
    /// [`VerifiedPackage::bytes_hashed`]).
    hashed: Arc<AtomicU64>,
}

impl Package {
    /// Opens `path` and parses its header, manifest and signature block.
    ///
    /// Every length is checked against its cap and the file size before anything is read
    /// or allocated; the file must be exactly as long as its regions add up to.
    pub fn open(path: &Path) -> Result<Self, PackageError> {
        // Without a non-blocking open, refuse FIFOs and devices before opening them.
        #[cfg(not(unix))]
        {
            let meta = std::fs::metadata(path).map_err(PackageError::io(path))?;
            if !meta.is_file() {
                return Err(PackageError::NotARegularFile {
                    path: path.to_owned(),
                    kind: file_kind(&meta),
                });
            }
        }
        let file = open_read_only(path)?;
        // What was opened, not what the path named a moment before, must be a plain file.
        let meta = file.metadata().map_err(PackageError::io(path))?;
        if !meta.is_file() {
            return Err(PackageError::NotARegularFile {
                path: path.to_owned(),
                kind: file_kind(&meta),
            });
        }
        let file_len = meta.len();

        let mut head = [0u8; HEADER_LEN as usize];
        let got = fill_at(&file, &mut head, 0).map_err(PackageError::io(path))?;
        let header = Header::parse(&head[..got], file_len)?;
        let prefix_len = header.prefix_len();
        if prefix_len > file_len {
            return Err(PackageError::Truncated {
                needed: prefix_len,
                actual: file_len,
            });
        }

        // Both lengths are capped by `Header::parse` and present in the file.
        let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
        let mut sig_bytes =
            vec![0u8; header.signature_count as usize * SIGNATURE_ENTRY_LEN as usize];
        for (buf, offset) in [
            (&mut manifest_bytes, HEADER_LEN),
            (&mut sig_bytes, HEADER_LEN + header.manifest_len),
        ] {
            let got = fill_at(&file, buf, offset).map_err(PackageError::io(path))?;
            if got < buf.len() {
                return Err(PackageError::PackageChanged);
            }
        }
        let mut prefix = Sha256::new();
        prefix.update(head);
        prefix.update(&manifest_bytes);
        prefix.update(&sig_bytes);

        let manifest = Manifest::from_signed_bytes(&manifest_bytes)?;
        let signatures = sig_bytes
            .chunks_exact(SIGNATURE_ENTRY_LEN as usize)
            .filter_map(|chunk| chunk.try_into().ok())
            .map(SignatureEntry::parse)
            .collect();
        let extents = container::layout(prefix_len, &manifest, file_len)?;
        Ok(Package {
            file,
            path: path.to_owned(),
            file_len,
            manifest_bytes,
            manifest,
            signatures,
            extents,
            prefix_digest: prefix.finalize().into(),
        })
    }

    /// The manifest as the package claims it. Not verified: for display only.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The package file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The package file's length in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Key ids in the signature block, in file order.
    pub fn signature_key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.signatures.iter().map(|s| s.key_id)
    }

    /// Checks one signature entry against the trust store.
    pub(crate) fn check_signature(
        &self,
        entry_index: usize,
        trust: &TrustStore,
    ) -> Result<Signer, PackageError> {
        let entry = &self.signatures[entry_index];
        let key = trust
            .get(entry.key_id)
            .ok_or(PackageError::UnknownKey(entry.key_id))?;
        let signature = Signature::from_bytes(&entry.signature);
        key.public_key()
            .verifying_key()
            .verify_strict(&container::signed_message(&self.manifest_bytes), &signature)
            .map_err(|_| PackageError::BadSignature(entry.key_id))?;
        Ok(Signer {
            key_id: entry.key_id,
            name: key.name().to_owned(),
            scope: key.scope(),
        })
    }

    /// Verifies the package: its signatures, then the bytes that are not checked later.
    ///
    /// Every signature entry must be by a trusted key and valid (a signature that cannot be
    /// checked is never ignored), no key may sign twice, and the key the manifest names as
    /// its signer must be among them.
    ///
    /// An image with signed block hashes is not read here: each of its blocks is checked
    /// against its signed hash on its way to the device ([`VerifiedPackage::open_image`]),
    /// which is the one time its bytes are hashed. An image of an older package, which has
    /// no block hashes, is hashed whole here as before, and again as it is sent. So is a
    /// dynamic layout's `super_empty.img`: a few KiB the host itself parses to plan the job.
    pub fn verify(self, trust: &TrustStore) -> Result<VerifiedPackage, PackageError> {
        let signer = self.check_signatures(trust)?;
        self.check_prefix()?;
        self.hash_images(|image| image.blocks.is_none() || image.partition == super::SUPER_EMPTY)?;
        self.check_sparse_headers()?;
        let manifest_sha256 = Sha256Sum(Sha256::digest(&self.manifest_bytes).into());
        tracing::debug!(
            path = %self.path.display(),
            signer = %signer.key_id,
            manifest_sha256 = %manifest_sha256,
            "package verified"
        );
        Ok(VerifiedPackage {
            file: Arc::new(self.file),
            path: self.path,
            manifest: self.manifest,
            extents: self.extents,
            signer,
            manifest_sha256,
            hashed: Arc::default(),
        })
    }

    /// Checks everything that can be wrong with the package — signatures, every image hash,
    /// every signed block hash, the sparse records — without using it. For answering "is
    /// this package good?" (`flashline verify`).
    ///
    /// The block hashes are checked on a second thread, reading the same file, while this
    /// one hashes each image whole: with a core free, as fast as one pass.
    pub fn check(&self, trust: &TrustStore) -> Result<Signer, PackageError> {
        let signer = self.check_signatures(trust)?;
        self.check_prefix()?;
        std::thread::scope(|scope| {
            let blocks = scope.spawn(|| self.check_blocks());
            let whole = self.hash_images(|_| true);
            let blocks = blocks
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            whole.and(blocks)
        })?;
        self.check_sparse_headers()?;
        Ok(signer)
    }

    /// Reads every image that has block hashes through a block-checking reader.
    fn check_blocks(&self) -> Result<(), PackageError> {
        let mut buf = vec![0u8; BUFFER_LEN];
        for (image, extent) in self.manifest.images.iter().zip(&self.extents) {
            let Some(blocks) = &image.blocks else {
                continue;
            };
            let mut reader = ImageReader::by_blocks(
                Arc::new(
                    self.file
                        .try_clone()
                        .map_err(PackageError::io(&self.path))?,
                ),
                image.partition.clone(),
                extent.offset,
                extent.len,
                blocks.block_hashes(),
                0,
                image.sha256,
            );
            loop {
                match std::io::Read::read(&mut reader, &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(PackageError::HashMismatch {
                            partition: image.partition.clone(),
                        })
                    }
                    Err(e) => return Err(PackageError::io(&self.path)(e)),
                }
            }
            reader.finish()?;
        }
        Ok(())
    }

    /// The signature rules of [`Package::verify`]; returns the manifest's signer.
    fn check_signatures(&self, trust: &TrustStore) -> Result<Signer, PackageError> {
        if self.signatures.is_empty() {
            return Err(PackageError::NoSignatures);
        }
        let mut seen = BTreeSet::new();
        for entry in &self.signatures {
            if !seen.insert(entry.key_id) {
                return Err(PackageError::DuplicateSignature(entry.key_id));
            }
        }
        let mut signer = None;
        for index in 0..self.signatures.len() {
            let checked = self.check_signature(index, trust)?;
            if checked.key_id == self.manifest.signer {
                signer = Some(checked);
            }
        }
        let signer = signer.ok_or(PackageError::SignerMismatch(self.manifest.signer))?;
        let signers: Vec<KeyId> = self.signatures.iter().map(|s| s.key_id).collect();
        trust.check_roles(
            &signers,
            self.manifest.targets.iter().map(|t| t.product.as_str()),
        )?;
        Ok(signer)
    }

    /// Re-reads everything before the first image and checks it is what `open` parsed.
    fn check_prefix(&self) -> Result<(), PackageError> {
        let io = PackageError::io(&self.path);
        if self.file.metadata().map_err(io)?.len() != self.file_len {
            return Err(PackageError::PackageChanged);
        }
        let mut prefix = Sha256::new();
        let prefix_len = self.extents.first().map_or(self.file_len, |e| e.offset);
        let mut buf = vec![0u8; BUFFER_LEN.min(prefix_len as usize)];
        let got = stream_at(&self.file, 0, prefix_len, &mut buf, |b| prefix.update(b))
            .map_err(PackageError::io(&self.path))?;
        if got != prefix_len || <[u8; 32]>::from(prefix.finalize()) != self.prefix_digest {
            return Err(PackageError::PackageChanged);
        }
        Ok(())
    }

    /// Reads and hashes whole each stored file `which` selects (the images, then a dynamic
    /// layout's `super_empty.img`), against its signed sha256.
    fn hash_images(&self, which: impl Fn(&super::Image) -> bool) -> Result<(), PackageError> {
        let mut buf = vec![0u8; BUFFER_LEN];
        for (image, extent) in self.manifest.stored().zip(&self.extents) {
            if !which(image) {
                continue;
            }
            let mut one = Sha256::new();
            let done = stream_at(&self.file, extent.offset, extent.len, &mut buf, |b| {
                one.update(b)
            })
            .map_err(PackageError::io(&self.path))?;
            if done != extent.len {
                return Err(PackageError::SizeMismatch {
                    partition: image.partition.clone(),
                    expected: extent.len,
                    actual: done,
                });
            }
            if Sha256Sum(one.finalize().into()) != image.sha256 {
                return Err(PackageError::HashMismatch {
                    partition: image.partition.clone(),
                });
            }
        }
        Ok(())
    }

    /// Confirms each image's signed `sparse` record agrees with its actual first bytes, so
    /// the engine can rely on the record when choosing how to send an image.
    fn check_sparse_headers(&self) -> Result<(), PackageError> {
        for (image, extent) in self.manifest.stored().zip(&self.extents) {
            let mut head = [0u8; sparse::FILE_HEADER_LEN];
            let want = extent.len.min(head.len() as u64) as usize;
            let got = fill_at(&self.file, &mut head[..want], extent.offset)
                .map_err(PackageError::io(&self.path))?;
            let agrees = match image.sparse {
                None => !sparse::looks_sparse(&head[..got]),
                Some(info) => {
                    got == head.len()
                        && sparse::Header::parse(&head).is_ok_and(|h| {
                            h.blk_sz == info.blk_sz && h.total_blks == info.total_blks
                        })
                }
            };
            if !agrees {
                return Err(PackageError::SparseInfoInconsistent {
                    partition: image.partition.clone(),
                });
            }
        }
        Ok(())
    }
}

impl VerifiedPackage {
    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The trusted key that signed the manifest.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// sha256 of the signed manifest, which binds every image by its hashes: identifies
    /// the package in reports, histories and job journals.
    pub fn manifest_sha256(&self) -> Sha256Sum {
        self.manifest_sha256
    }

    /// Bytes hashed so far by the image readers opened from this package, on their way to
    /// devices: with signed block hashes, each byte sent is hashed once (a benchmark and
    /// the tests use it to check that no path hashes twice).
    pub fn bytes_hashed(&self) -> u64 {
        self.hashed.load(Ordering::Relaxed)
    }

    /// The package file's path (for display; the file is never reopened through it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Qualcomm EDL plan, if this is a Qualcomm package.
    pub fn qualcomm(&self) -> Option<&QualcommPlan> {
        self.manifest.qualcomm.as_ref()
    }

    /// A reader over the `super_empty.img` of a package with a dynamic layout, hashing
    /// what it returns like [`VerifiedPackage::open_image`].
    pub fn open_super_empty(&self) -> Result<ImageReader, PackageError> {
        let dynamic = self
            .manifest
            .dynamic
            .as_ref()
            .ok_or(PackageError::ManifestInvalid(
                "the package carries no dynamic-partitions layout".into(),
            ))?;
        let index = self.manifest.images.len();
        let extent = self.extents.get(index).ok_or(PackageError::NoSuchImage {
            index,
            count: self.extents.len(),
        })?;
        Ok(ImageReader::new(
            Arc::clone(&self.file),
            dynamic.super_empty.partition.clone(),
            extent.offset,
            extent.len,
            dynamic.super_empty.sha256,
        )
        .counting(Arc::clone(&self.hashed)))
    }

    /// The plan of a ZXIC package, if this is one.
    pub fn zxic(&self) -> Option<&super::zxic::ZxicPlan> {
        self.manifest.zxic.as_ref()
    }

    /// The Unisoc plan, for a Unisoc package.
    pub fn unisoc(&self) -> Option<&super::unisoc::UnisocPlan> {
        self.manifest.unisoc.as_ref()
    }

    /// A reader over the Firehose programmer of a Qualcomm package, for the Sahara upload.
    pub fn open_programmer(&self) -> Result<ImageReader, PackageError> {
        let plan = self.qualcomm().ok_or(PackageError::NotAQualcommPackage)?;
        self.open_image(plan.programmer)
    }

    /// A reader over image `index` (manifest order) that does not hash, for planning a
    /// transfer; what is sent must come from [`VerifiedPackage::open_image`].
    pub fn open_image_for_planning(&self, index: usize) -> Result<PlanningReader, PackageError> {
        let extent = self.extents.get(index).ok_or(PackageError::NoSuchImage {
            index,
            count: self.manifest.images.len(),
        })?;
        Ok(PlanningReader::new(
            Arc::clone(&self.file),
            extent.offset,
            extent.len,
        ))
    }

    /// A reader over image `index` (manifest order) that re-hashes what it returns.
    pub fn open_image(&self, index: usize) -> Result<ImageReader, PackageError> {
        let (Some(image), Some(extent)) =
            (self.manifest.images.get(index), self.extents.get(index))
        else {
            return Err(PackageError::NoSuchImage {
                index,
                count: self.manifest.images.len(),
            });
        };
        let reader = match &image.blocks {
            Some(blocks) => ImageReader::by_blocks(
                Arc::clone(&self.file),
                image.partition.clone(),
                extent.offset,
                extent.len,
                blocks.block_hashes(),
                0,
                image.sha256,
            ),
            None => ImageReader::new(
                Arc::clone(&self.file),
                image.partition.clone(),
                extent.offset,
                extent.len,
                image.sha256,
            ),
        };
        Ok(reader.counting(Arc::clone(&self.hashed)))
    }

    /// The signed block hashes of image `index`, if its package has them.
    pub fn block_hashes(&self, index: usize) -> Option<BlockHashes> {
        let blocks = self.manifest.images.get(index)?.blocks.as_ref()?;
        Some(blocks.block_hashes())
    }

    /// A reader over image `index` from its block `first` on, checking every block; only
    /// for an image with signed block hashes (see [`VerifiedPackage::block_hashes`]).
    pub fn open_image_from_block(
        &self,
        index: usize,
        first: usize,
    ) -> Result<ImageReader, PackageError> {
        let (Some(image), Some(extent)) =
            (self.manifest.images.get(index), self.extents.get(index))
        else {
            return Err(PackageError::NoSuchImage {
                index,
                count: self.manifest.images.len(),
            });
        };
        let blocks = image.blocks.as_ref().ok_or_else(|| {
            PackageError::ManifestInvalid(format!(
                "{} has no block hashes to start reading part way through",
                image.partition
            ))
        })?;
        Ok(ImageReader::by_blocks(
            Arc::clone(&self.file),
            image.partition.clone(),
            extent.offset,
            extent.len,
            blocks.block_hashes(),
            first,
            image.sha256,
        )
        .counting(Arc::clone(&self.hashed)))
    }
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("path", &self.path)
            .field("file_len", &self.file_len)
            .field("name", &self.manifest.name)
            .field("signatures", &self.signatures.len())
            .finish_non_exhaustive()
    }
}

/// Opens the package read-only, without waiting on a FIFO put where it was expected and
/// without letting other processes write it meanwhile: see
/// [`crate::platform::open_read_only_no_wait`]. The caller refuses anything that is not a
/// regular file.
fn open_read_only(path: &Path) -> Result<File, PackageError> {
    crate::platform::open_read_only_no_wait(path).map_err(PackageError::io(path))
}

/// A word for what a non-regular file is, for error messages.
pub(crate) fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    if meta.is_dir() {
        "a directory"
    } else if meta.is_symlink() {
        "a symbolic link"
    } else {
        "a device, pipe or socket"
    }
}
