//! Opening a package (structure only) and verifying it (signatures, then every byte).
//!
//! The two steps are two types: a [`Package`] has been parsed but nothing in it is trusted;
//! a [`VerifiedPackage`] can only come out of [`Package::verify`], so holding one is proof
//! that its manifest is signed by a trusted key and that every image matched when checked.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use ed25519_dalek::Signature;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::container::{self, Extent, Header, SignatureEntry, HEADER_LEN, SIGNATURE_ENTRY_LEN};
use super::qualcomm::QualcommPlan;
use super::reader::{fill_at, stream_at, BUFFER_LEN};
use super::trust::{KeyScope, TrustStore};
use super::{ImageReader, KeyId, Manifest, PackageError, PlanningReader, Sha256Sum};
use crate::protocol::sparse;

/// Buffers in flight between the image reader and the whole-file hasher.
const HASH_BUFFERS: usize = 4;

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

/// The way to a helper thread that hashes the same buffers as the image reader.
struct Tee {
    to_helper: mpsc::SyncSender<(Arc<Vec<u8>>, usize)>,
    returned: mpsc::Receiver<Arc<Vec<u8>>>,
    /// Buffers not yet allocated.
    fresh: usize,
}

impl Tee {
    /// A buffer to read into: a new one while fewer than [`HASH_BUFFERS`] exist, else the
    /// next one the helper has finished with.
    fn buffer(&mut self) -> Result<Arc<Vec<u8>>, PackageError> {
        if self.fresh > 0 {
            self.fresh -= 1;
            return Ok(Arc::new(vec![0u8; BUFFER_LEN]));
        }
        // The helper stops only when this side stops sending, so it never hangs up first.
        self.returned
            .recv()
            .map_err(|_| PackageError::PackageChanged)
    }

    /// Queues the first `n` bytes of `buf` for the helper.
    fn send(&self, buf: &Arc<Vec<u8>>, n: usize) -> Result<(), PackageError> {
        self.to_helper
            .send((Arc::clone(buf), n))
            .map_err(|_| PackageError::PackageChanged)
    }
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
    package_sha256: Sha256Sum,
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

    /// Verifies the package: signatures first, then a full pass over the file hashing every
    /// image and the whole package.
    ///
    /// Every signature entry must be by a trusted key and valid (a signature that cannot be
    /// checked is never ignored), no key may sign twice, and the key the manifest names as
    /// its signer must be among them.
    pub fn verify(self, trust: &TrustStore) -> Result<VerifiedPackage, PackageError> {
        let signer = self.check_signatures(trust)?;
        let package_sha256 = self.hash_contents()?;
        self.check_sparse_headers()?;
        tracing::debug!(
            path = %self.path.display(),
            signer = %signer.key_id,
            sha256 = %package_sha256,
            "package verified"
        );
        Ok(VerifiedPackage {
            file: Arc::new(self.file),
            path: self.path,
            manifest: self.manifest,
            extents: self.extents,
            signer,
            package_sha256,
        })
    }

    /// Checks everything [`Package::verify`] checks — signatures, every image hash, the
    /// sparse records — but not the whole-file digest that identifies a package in reports,
    /// which doubles the hashing work. For answering "is this package good?" without using it.
    pub fn check(&self, trust: &TrustStore) -> Result<Signer, PackageError> {
        let signer = self.check_signatures(trust)?;
        self.check_prefix()?;
        self.hash_images(None)?;
        self.check_sparse_headers()?;
        Ok(signer)
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

    /// Re-reads everything before the first image, checks it is what `open` parsed, and
    /// returns the whole-file hash over it.
    fn check_prefix(&self) -> Result<Sha256, PackageError> {
        let io = PackageError::io(&self.path);
        if self.file.metadata().map_err(io)?.len() != self.file_len {
            return Err(PackageError::PackageChanged);
        }
        let mut whole = Sha256::new();
        let prefix_len = self.extents.first().map_or(self.file_len, |e| e.offset);
        let mut buf = vec![0u8; BUFFER_LEN.min(prefix_len as usize)];
        let got = stream_at(&self.file, 0, prefix_len, &mut buf, |b| whole.update(b))
            .map_err(PackageError::io(&self.path))?;
        if got != prefix_len || <[u8; 32]>::from(whole.clone().finalize()) != self.prefix_digest {
            return Err(PackageError::PackageChanged);
        }
        Ok(whole)
    }

    /// One pass over the whole file: checks the prefix is what `open` parsed, each image
    /// against its signed sha256, and returns the sha256 of the entire file.
    ///
    /// Every image byte feeds two hashes (its image's and the whole file's); SHA-256 is
    /// sequential, so the whole-file hash runs on a helper thread over the same buffers
    /// while this thread reads and hashes the image. With a second core free, verifying
    /// takes about as long as hashing the file once.
    fn hash_contents(&self) -> Result<Sha256Sum, PackageError> {
        let mut whole = self.check_prefix()?;
        let whole = std::thread::scope(|scope| {
            let (to_helper, queued) = mpsc::sync_channel::<(Arc<Vec<u8>>, usize)>(HASH_BUFFERS);
            let (give_back, returned) = mpsc::channel::<Arc<Vec<u8>>>();
            let helper = scope.spawn(move || {
                for (buf, n) in queued {
                    whole.update(&buf[..n]);
                    // The reader may already have stopped on an error; then nobody waits.
                    let _ = give_back.send(buf);
                }
                whole
            });
            let images = self.hash_images(Some(Tee {
                to_helper,
                returned,
                fresh: HASH_BUFFERS,
            }));
            let whole = helper
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            images.map(|()| whole)
        })?;
        Ok(Sha256Sum(whole.finalize().into()))
    }

    /// Reads and hashes each image, handing every buffer to `tee` too, if given.
    fn hash_images(&self, mut tee: Option<Tee>) -> Result<(), PackageError> {
        let mut spare = None;
        for (image, extent) in self.manifest.stored().zip(&self.extents) {
            let mut one = Sha256::new();
            let mut done = 0u64;
            while done < extent.len {
                let mut buf = match &mut tee {
                    Some(tee) => tee.buffer()?,
                    None => spare
                        .take()
                        .unwrap_or_else(|| Arc::new(vec![0u8; BUFFER_LEN])),
                };
                let want = (extent.len - done).min(BUFFER_LEN as u64) as usize;
                // Nobody else holds the buffer any more, so this never copies.
                let n = fill_at(
                    &self.file,
                    &mut Arc::make_mut(&mut buf)[..want],
                    extent.offset + done,
                )
                .map_err(PackageError::io(&self.path))?;
                if n == 0 {
                    break;
                }
                if let Some(tee) = &tee {
                    tee.send(&buf, n)?;
                }
                one.update(&buf[..n]);
                done += n as u64;
                if tee.is_none() {
                    spare = Some(buf);
                }
            }
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

    /// sha256 of the entire package file as verified; identifies the package in reports.
    pub fn package_sha256(&self) -> Sha256Sum {
        self.package_sha256
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
        ))
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
        Ok(ImageReader::new(
            Arc::clone(&self.file),
            image.partition.clone(),
            extent.offset,
            extent.len,
            image.sha256,
        ))
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
