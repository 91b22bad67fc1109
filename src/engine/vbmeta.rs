//! `flash --disable-verity` / `--disable-verification`: setting AVB flags in the package's
//! vbmeta image on its way to the device.
//!
//! The package's signature covers the image as packed; the job still verifies every byte
//! read against it (the hashing reader sees the bytes before they are changed), and only
//! then are the flags set, in the stream, on the bytes that go out. That is the only
//! change: the flags word's low byte, as Google's client does ([`avb`]). The flags are
//! never implied: asked for explicitly, shown as a preflight line before anything is
//! written, refused unless the bootloader says it is unlocked, and recorded in the report
//! with the SHA-256 of what was actually sent.

use std::io::Read;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::preflight::{Check, Status};
use super::report::Report;
use crate::device::{DeviceInfo, LockState};
use crate::package::VerifiedPackage;
use crate::protocol::avb::{self, Flags, FlagsWriter};

/// The preflight lines for the flags asked for: none without flags; otherwise one line per
/// vbmeta image the plan writes (`targets`: each image's partition on the device), or a
/// refusal when there is none, the bootloader is not known to be unlocked, or an image is
/// not a vbmeta image.
pub(super) fn checks(
    flags: Flags,
    package: &VerifiedPackage,
    targets: &[(String, Option<u64>)],
    device: &DeviceInfo,
) -> Vec<Check> {
    if flags.is_empty() {
        return Vec::new();
    }
    let line = |name: String, status, actual: String, message: String| Check {
        name,
        status,
        actual,
        required: flags.to_string(),
        message,
        relaxed_by: None,
    };
    let images = patched_images(flags, targets.iter().map(|(name, _)| name.as_str()));
    if images.is_empty() {
        return vec![line(
            "vbmeta-flags".into(),
            Status::Refuse,
            "no vbmeta image".into(),
            format!(
                "{flags} was asked for, but the package writes no vbmeta partition (vbmeta, \
                 vbmeta_a or vbmeta_b), so there is no header to set it in"
            ),
        )];
    }
    let mut lines = Vec::new();
    if device.lock != LockState::Unlocked {
        lines.push(line(
            "vbmeta-flags".into(),
            Status::Refuse,
            format!("{:?}", device.lock).to_lowercase(),
            format!(
                "{flags} needs a bootloader that says it is unlocked (unlocked: yes): a locked \
                 one refuses to boot a vbmeta image whose flags were changed"
            ),
        ));
    }
    for index in images {
        let target = &targets[index].0;
        let name = format!("vbmeta-flags:{target}");
        let header = if package.manifest().images[index].sparse.is_some() {
            Err("it is a sparse image".to_string())
        } else {
            read_header(package, index)
        };
        lines.push(match header {
            Ok(header) => line(
                name,
                Status::Warn,
                format!("flags {:#x} in the signed image", header.flags),
                format!(
                    "{flags} will be set in the vbmeta header of {target} on its way to the \
                     device, after its signed bytes are verified: the phone will boot with \
                     verification relaxed; the report records the SHA-256 of what was sent"
                ),
            ),
            Err(why) => line(
                name,
                Status::Refuse,
                "not a vbmeta image".into(),
                format!("cannot set {flags} in {target}: {why}"),
            ),
        });
    }
    lines
}

/// Indices of the images whose target is a vbmeta partition, when flags are asked for.
fn patched_images<'a>(flags: Flags, targets: impl Iterator<Item = &'a str>) -> Vec<usize> {
    if flags.is_empty() {
        return Vec::new();
    }
    targets
        .enumerate()
        .filter(|(_, name)| avb::is_vbmeta_partition(name))
        .map(|(i, _)| i)
        .collect()
}

/// Reads the header of image `index` (only its first [`avb::HEADER_LEN`] bytes).
fn read_header(package: &VerifiedPackage, index: usize) -> Result<avb::Header, String> {
    let mut reader = package
        .open_image_for_planning(index)
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(avb::HEADER_LEN);
    (&mut reader)
        .take(avb::HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    avb::parse_header(&head).map_err(|e| e.to_string())
}

/// The flags to set in one image, and the SHA-256 of what was sent once it was.
#[derive(Debug, Clone)]
pub(super) struct Patch {
    flags: Flags,
    sent: Arc<Mutex<Option<String>>>,
}

/// The patches of a job, by image index.
#[derive(Debug, Default)]
pub(super) struct Patches(Vec<Option<Patch>>);

impl Patches {
    /// One patch per vbmeta image when flags are asked for.
    pub(super) fn new(flags: Flags, targets: &[String]) -> Self {
        let mut patches = vec![None; targets.len()];
        for index in patched_images(flags, targets.iter().map(String::as_str)) {
            patches[index] = Some(Patch {
                flags,
                sent: Arc::default(),
            });
        }
        Patches(patches)
    }

    /// The patch of image `index`, if it gets one.
    pub(super) fn of(&self, index: usize) -> Option<&Patch> {
        self.0.get(index).and_then(Option::as_ref)
    }

    /// After image `index` was written: its report line carries the SHA-256 of the bytes
    /// sent, and a note says which flags were set where.
    pub(super) fn record(&self, index: usize, report: &mut Report) {
        let Some(patch) = self.of(index) else { return };
        let sent = patch.sent.lock().ok().and_then(|s| s.clone());
        let Some(entry) = report.images.get_mut(index) else {
            return;
        };
        entry.sha256_sent = sent.clone();
        entry.vbmeta_flags = Some(patch.flags.to_string());
        report.notes.push(format!(
            "vbmeta flags {} set on {} (package image {}): its signed bytes (sha256 {}) were \
             verified on their way; the bytes sent have sha256 {}",
            patch.flags,
            entry.target,
            entry.partition,
            entry.sha256_signed,
            sent.as_deref().unwrap_or("unknown")
        ));
    }
}

impl Patch {
    /// Sets the flags in the image's bytes as they are read (after the hashing reader
    /// checked them against the signature); `hash_sent` hashes the result for the report.
    pub(super) fn patcher(&self, hash_sent: bool) -> Patcher {
        Patcher {
            writer: FlagsWriter::new(self.flags),
            hasher: hash_sent.then(Sha256::new),
            sent: Arc::clone(&self.sent),
        }
    }
}

/// Sets vbmeta flags in the bytes of one pass over an image.
pub(super) struct Patcher {
    writer: FlagsWriter,
    hasher: Option<Sha256>,
    sent: Arc<Mutex<Option<String>>>,
}

impl Patcher {
    /// Sets the flags in the next bytes read; fails if the image is no vbmeta image.
    pub(super) fn apply(&mut self, bytes: &mut [u8]) -> std::io::Result<()> {
        self.writer
            .apply(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&*bytes);
        }
        Ok(())
    }

    /// At the end of the image: the whole header went past; the sent bytes' SHA-256 is
    /// kept for the report.
    pub(super) fn finish(self) -> Result<(), String> {
        self.writer.finish().map_err(|e| e.to_string())?;
        if let Some(hasher) = self.hasher {
            if let Ok(mut sent) = self.sent.lock() {
                *sent = Some(hex::encode(hasher.finalize()));
            }
        }
        Ok(())
    }
}
