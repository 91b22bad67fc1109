//! The job journal: how far a job got on one device, kept on disk as it goes.
//!
//! A yanked cable, a power cut or flashline itself being killed can stop a job between any
//! two bytes. The journal (one file per device serial) records for each image of the job
//! whether it was started, fully sent, or verified, so that the same job run again after
//! the device comes back skips the verified images and writes the interrupted one again
//! from its start. Skipping is the only thing the journal decides, and it can only ever
//! skip an image the device already holds: a journal of another package, another image
//! list or another device is ignored, and drivers that can read a digest back check every
//! skipped image against the device first.
//!
//! A fastboot device cannot read a digest back, so there the journal alone vouches for the
//! images it keeps, and a serial number alone does not name one device (placeholder serials
//! are shared by whole production runs). A journal is therefore bound to a fingerprint of
//! the device it was written for (product, serial, the partition table `getvar all`
//! reported — names and sizes —, the current slot, and for raw storage the LUN geometry)
//! and to a time window of [`RESUME_WINDOW`] since it was last written: outside either, the
//! whole job runs again. Two identical devices with one serial and one partition table are
//! still indistinguishable; the window bounds how long such a mix-up can happen.
//!
//! The journal is written atomically (temporary file, fsync, rename) at every step, as a
//! private file (see [`crate::state_file`]): a symbolic link planted for the journal folder
//! or file is neither read nor written through, so the job runs whole. Failing to write it
//! never stops a job: the worst outcome of a stale journal is an image written twice.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::event::Event;
use super::job::{JobRequest, Stop};
use super::report::{now, safe_name, Outcome, Report};
use crate::device::{DeviceInfo, Driver, ImageSource, Target};
use crate::package::VerifiedPackage;

/// The journal format this build writes and reads.
const FORMAT: u32 = 2;

/// How long after its last write a journal may still be resumed: long enough to fetch a
/// cable or a charger and run the job again, short enough that a journal left on a station
/// is not applied to another device with the same serial days later.
pub const RESUME_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// Larger journal files are not read (a job has at most a few hundred images).
const MAX_JOURNAL_BYTES: u64 = 1024 * 1024;

/// How far one image got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageState {
    /// Not touched by this job yet.
    Pending,
    /// Bytes may have reached the device; the partition may hold a mix of old and new.
    Started,
    /// Every byte was sent, but the device has not confirmed them yet.
    Written,
    /// The device holds exactly the signed image (the driver's own check passed).
    Verified,
}

/// One image in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalImage {
    /// Where the image goes (partition with slot suffix, or LUN and sectors).
    pub target: String,
    /// The signed SHA-256 of the image.
    pub sha256: String,
    /// How far it got.
    pub state: ImageState,
}

/// What the journal file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalEntry {
    /// [`FORMAT`].
    pub format: u32,
    /// The device's serial number, as the device reported it.
    pub serial: String,
    /// The device's [`fingerprint`].
    pub device: String,
    /// SHA-256 of the whole package file.
    pub package_sha256: String,
    /// Package name and version, for messages.
    pub package: String,
    /// When the journal was last written.
    pub updated_at: String,
    /// Regions erased by this job (Qualcomm erase steps), by label.
    pub erased: Vec<String>,
    /// The job's images, in plan order.
    pub images: Vec<JournalImage>,
    /// Steps other than image writes this job finished (`update-super`,
    /// `reboot-bootloader:bootloader_b`, …), by name; see [`super::fastbootd`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// The slot this job made active before fastbootd (`from` was the running one), so
    /// that a run after an interruption writes the same slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched: Option<SlotSwitch>,
}

/// A slot switch a job made before its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSwitch {
    /// The slot the device ran when the job started.
    pub from: String,
    /// The slot the job writes and made active.
    pub to: String,
}

/// What an earlier, unfinished run of the same job left on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Indexes of images the earlier run verified.
    pub verified: Vec<usize>,
    /// The first image the earlier run did not verify, with its state (the incomplete one).
    pub interrupted: Option<(usize, ImageState)>,
    /// Labels of erase steps the earlier run finished.
    pub erased: Vec<String>,
    /// Other steps the earlier run finished.
    pub steps: Vec<String>,
    /// The slot switch the earlier run made.
    pub switched: Option<SlotSwitch>,
    /// When the earlier run last wrote the journal.
    pub updated_at: String,
}

/// The journal of the job running now.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    entry: JournalEntry,
    /// Write failures so far, reported once in the job's notes.
    failures: Vec<String>,
}

impl Journal {
    /// Opens the journal for `serial` in `dir` for a job writing `images` (target and signed
    /// hash, in plan order) from the package with hash `package_sha256` to the device with
    /// [`fingerprint`] `device`.
    ///
    /// Returns what an earlier unfinished run of this same job on this same device verified
    /// within [`RESUME_WINDOW`], if there was one, and a note for the report when an
    /// unfinished journal is not resumed.
    pub fn open(
        dir: &Path,
        serial: &str,
        device: &str,
        package_sha256: &str,
        package: &str,
        images: &[(String, String)],
    ) -> (Journal, Option<Resume>, Option<String>) {
        let path = dir.join(file_name(serial));
        let fresh = JournalEntry {
            format: FORMAT,
            serial: serial.to_string(),
            device: device.to_string(),
            package_sha256: package_sha256.to_string(),
            package: package.to_string(),
            updated_at: now(),
            erased: Vec::new(),
            steps: Vec::new(),
            switched: None,
            images: images
                .iter()
                .map(|(target, sha256)| JournalImage {
                    target: target.clone(),
                    sha256: sha256.clone(),
                    state: ImageState::Pending,
                })
                .collect(),
        };
        let (resume, note) = match load(&path) {
            Ok(None) => (None, None),
            Ok(Some(old)) if old.serial != serial => (
                None,
                Some(format!(
                    "the job journal {} belongs to another serial number and was replaced",
                    path.display()
                )),
            ),
            Ok(Some(old)) if old.device != device => (
                None,
                Some(format!(
                    "the job journal {} was left by a device with this serial but another product, \
                     partition table or slot, so it may be another device: every image is written",
                    path.display()
                )),
            ),
            Ok(Some(old)) if !within_window(&old.updated_at, SystemTime::now()) => (
                None,
                Some(format!(
                    "the job journal {} was last written at {}, outside the {} h in which a job \
                     resumes: every image is written",
                    path.display(),
                    old.updated_at,
                    RESUME_WINDOW.as_secs() / 3600
                )),
            ),
            Ok(Some(old)) if old.package_sha256 == package_sha256 && same_images(&old, &fresh) => {
                (Some(resume_from(&old)), None)
            }
            Ok(Some(old)) => (
                None,
                Some(format!(
                    "an earlier job ({}) on this device did not finish; this job replaces it",
                    old.package
                )),
            ),
            Err(e) => (
                None,
                Some(format!(
                    "the job journal {} could not be read ({e}); starting from the first image",
                    path.display()
                )),
            ),
        };
        let mut entry = fresh;
        if let Some(resume) = &resume {
            for &i in &resume.verified {
                entry.images[i].state = ImageState::Verified;
            }
            entry.erased = resume.erased.clone();
            entry.steps = resume.steps.clone();
            entry.switched = resume.switched.clone();
        }
        let mut journal = Journal {
            path,
            entry,
            failures: Vec::new(),
        };
        journal.save();
        (journal, resume, note)
    }

    /// Records how far image `index` got.
    pub fn mark(&mut self, index: usize, state: ImageState) {
        if let Some(image) = self.entry.images.get_mut(index) {
            if image.state != state {
                image.state = state;
                self.save();
            }
        }
    }

    /// Records a finished erase step.
    pub fn mark_erased(&mut self, label: &str) {
        if !self.entry.erased.iter().any(|l| l == label) {
            self.entry.erased.push(label.to_string());
            self.save();
        }
    }

    /// Records a finished step that is not an image write.
    pub fn mark_step(&mut self, step: &str) {
        if !self.entry.steps.iter().any(|s| s == step) {
            self.entry.steps.push(step.to_string());
            self.save();
        }
    }

    /// Records that the job made `to` the active slot while the device ran `from`.
    pub fn mark_switched(&mut self, from: &str, to: &str) {
        let switch = SlotSwitch {
            from: from.to_string(),
            to: to.to_string(),
        };
        if self.entry.switched.as_ref() != Some(&switch) {
            self.entry.switched = Some(switch);
            self.save();
        }
    }

    /// The state of image `index`.
    pub fn state(&self, index: usize) -> Option<ImageState> {
        self.entry.images.get(index).map(|i| i.state)
    }

    /// Where the journal lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The job is over and nothing is left to resume: the journal is removed.
    pub fn finish(self) -> Option<String> {
        match crate::secure_fs::remove(&self.path) {
            Ok(()) => None,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(format!(
                "the finished job's journal {} could not be removed: {e}",
                self.path.display()
            )),
        }
    }

    /// Write failures so far, as one note for the report.
    pub fn take_failures(&mut self) -> Option<String> {
        if self.failures.is_empty() {
            return None;
        }
        let note = format!(
            "the job journal could not be kept up to date ({}); an interrupted job may write some images again",
            self.failures.join("; ")
        );
        self.failures.clear();
        Some(note)
    }

    fn save(&mut self) {
        self.entry.updated_at = now();
        if let Err(e) = write_atomically(&self.path, &self.entry) {
            let failure = format!("writing {}: {e}", self.path.display());
            if !self.failures.contains(&failure) {
                self.failures.push(failure);
            }
        }
    }
}

/// The job journal as a job uses it: open (maybe resuming an earlier run), keep the images
/// that run verified, record each write, and close at the end.
pub(super) struct Resumable {
    journal: Option<Journal>,
    verified: Vec<usize>,
    erased: Vec<String>,
    steps: Vec<String>,
}

impl Resumable {
    /// Opens the journal of the device's serial for this job, bound to the device's
    /// [`fingerprint`]; without a serial number there is nothing to key a journal on and
    /// the job cannot resume.
    pub(super) fn open(
        req: &JobRequest,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
        device: &DeviceInfo,
        package: &VerifiedPackage,
    ) -> Self {
        let Some(serial) = device.serial.as_deref() else {
            report.notes.push(
                "the device reports no serial number, so this job keeps no journal and cannot resume if interrupted"
                    .into(),
            );
            return Resumable {
                journal: None,
                verified: Vec::new(),
                erased: Vec::new(),
                steps: Vec::new(),
            };
        };
        let images: Vec<(String, String)> = report
            .images
            .iter()
            .map(|i| (i.target.clone(), i.sha256_signed.clone()))
            .collect();
        let m = package.manifest();
        let (journal, resume, note) = Journal::open(
            &req.options.journal_dir,
            serial,
            &fingerprint(device),
            &package.manifest_sha256().to_string(),
            &format!("{} {}", m.name, m.version),
            &images,
        );
        report.notes.extend(note);
        let (verified, erased, steps) = match resume {
            Some(resume) => {
                let name = |i: usize| images[i].0.clone();
                let interrupted = resume.interrupted.map(|(i, _)| name(i));
                report.notes.push(format!(
                    "resumed a job interrupted at {}: {} image(s) it verified are kept{}",
                    resume.updated_at,
                    resume.verified.len(),
                    interrupted
                        .as_ref()
                        .map(|t| format!(", {t} is written again from its start"))
                        .unwrap_or_default()
                ));
                emit(Event::Resuming {
                    verified: resume.verified.iter().map(|&i| name(i)).collect(),
                    interrupted,
                    since: resume.updated_at,
                });
                (resume.verified, resume.erased, resume.steps)
            }
            None => (Vec::new(), Vec::new(), Vec::new()),
        };
        Resumable {
            journal: Some(journal),
            verified,
            erased,
            steps,
        }
    }

    /// Erases `target` unless the interrupted run already did (erasing again could wipe an
    /// image that run wrote and verified inside it).
    pub(super) fn erase(
        &mut self,
        driver: &mut dyn Driver,
        label: &str,
        target: &Target,
    ) -> Result<(), Stop> {
        if self.erased.iter().any(|l| l == label) {
            return Ok(());
        }
        driver
            .erase(target)
            .map_err(|e| (Outcome::DeviceError, format!("erasing {label} failed: {e}")))?;
        if let Some(j) = self.journal.as_mut() {
            j.mark_erased(label);
        }
        Ok(())
    }

    /// Whether the interrupted run verified image `index` (it may still be written again
    /// if the device no longer holds it; see [`Resumable::keep`]).
    pub(super) fn was_verified(&self, index: usize) -> bool {
        self.verified.contains(&index)
    }

    /// Whether image `index` was verified by the earlier run and is still on the device;
    /// the device confirms it by digest when it can. An image the device no longer holds is
    /// written again.
    pub(super) fn keep(
        &mut self,
        driver: &mut dyn Driver,
        index: usize,
        target: &Target,
        source: &dyn ImageSource,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<bool, Stop> {
        if !self.verified.contains(&index) {
            return Ok(false);
        }
        let checked_on_device = match driver.holds(target, source) {
            Ok(Some(true)) => true,
            Ok(None) => false,
            Ok(Some(false)) => {
                report.notes.push(format!(
                    "{target} was verified by the interrupted run but the device no longer holds it; it is written again"
                ));
                return Ok(false);
            }
            Err(e) => {
                return Err((
                    Outcome::DeviceError,
                    format!("checking {target} from the interrupted run failed: {e}"),
                ))
            }
        };
        let entry = &mut report.images[index];
        entry.status = "kept".into();
        entry.sha256_sent = Some(entry.sha256_signed.clone());
        emit(Event::ImageKept {
            index,
            target: entry.target.clone(),
            bytes: entry.bytes,
            checked_on_device,
        });
        Ok(true)
    }

    /// Whether this run or the interrupted one finished `step`.
    pub(super) fn step_done(&self, step: &str) -> bool {
        self.steps.iter().any(|s| s == step)
    }

    /// Records a finished step (see [`Journal::mark_step`]).
    pub(super) fn mark_step(&mut self, step: &str) {
        if !self.step_done(step) {
            self.steps.push(step.to_string());
        }
        if let Some(j) = self.journal.as_mut() {
            j.mark_step(step);
        }
    }

    /// Records a slot switch before the job's end (see [`Journal::mark_switched`]).
    pub(super) fn mark_switched(&mut self, from: &str, to: &str) {
        if let Some(j) = self.journal.as_mut() {
            j.mark_switched(from, to);
        }
    }

    /// The journal to record writes in.
    pub(super) fn journal(&mut self) -> Option<&mut Journal> {
        self.journal.as_mut()
    }

    /// The job's writes are done: nothing is left to resume.
    pub(super) fn finish(&mut self, report: &mut Report) {
        if let Some(mut journal) = self.journal.take() {
            report.notes.extend(journal.take_failures());
            report.notes.extend(journal.finish());
        }
    }
}

/// The journal's file name: the serial when it is a plain name, made unique with a hash of
/// the exact serial so that cleaning never makes two devices share a journal.
fn file_name(serial: &str) -> String {
    let digest = Sha256::digest(serial.as_bytes());
    format!("{}-{}.json", safe_name(serial), hex::encode(&digest[..6]))
}

/// What identifies one device beyond its serial number, as a SHA-256: its product, serial,
/// partition table (names and sizes, as `getvar all` reports them), current slot, and the
/// geometry of its raw storage. The partition table read from raw storage (EDL) is left
/// out: a Qualcomm job may rewrite it itself, and the EDL driver checks every kept image on
/// the device by digest anyway.
pub fn fingerprint(device: &DeviceInfo) -> String {
    let raw_storage = !device.luns.is_empty();
    let identity = serde_json::json!({
        "product": device.product,
        "serial": device.serial,
        "partitions": (!raw_storage).then_some(&device.partitions),
        "slot": device.slots.as_ref().map(|s| &s.current),
        "luns": device.luns,
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// Whether a journal last written at `updated_at` may still be resumed at `now`. A time
/// that does not parse, or lies in the future (a clock set back), is outside.
fn within_window(updated_at: &str, now: SystemTime) -> bool {
    humantime::parse_rfc3339(updated_at)
        .ok()
        .and_then(|t| now.duration_since(t).ok())
        .is_some_and(|age| age <= RESUME_WINDOW)
}

fn same_images(a: &JournalEntry, b: &JournalEntry) -> bool {
    a.images.len() == b.images.len()
        && a.images
            .iter()
            .zip(&b.images)
            .all(|(x, y)| x.target == y.target && x.sha256 == y.sha256)
}

fn resume_from(old: &JournalEntry) -> Resume {
    let verified = old
        .images
        .iter()
        .enumerate()
        .filter(|(_, i)| i.state == ImageState::Verified)
        .map(|(n, _)| n)
        .collect();
    let interrupted = old
        .images
        .iter()
        .enumerate()
        .find(|(_, i)| i.state != ImageState::Verified)
        .map(|(n, i)| (n, i.state));
    Resume {
        verified,
        interrupted,
        erased: old.erased.clone(),
        steps: old.steps.clone(),
        switched: old.switched.clone(),
        updated_at: old.updated_at.clone(),
    }
}

/// The slot switch an unfinished job on the device with `serial` made before its end,
/// if its journal is still within [`RESUME_WINDOW`]: the device now runs `to` because of
/// that job, which writes `to` until it finishes.
pub fn switched_slot(dir: &Path, serial: &str) -> Option<SlotSwitch> {
    let old = load(&dir.join(file_name(serial))).ok()??;
    (old.serial == serial && within_window(&old.updated_at, SystemTime::now()))
        .then_some(old.switched)
        .flatten()
}

/// Why a journal file was not used.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("it is larger than {MAX_JOURNAL_BYTES} bytes")]
    TooLarge,
    #[error("it is damaged: {0}")]
    Damaged(#[from] serde_json::Error),
    #[error("it has format {0}, this flashline reads format {FORMAT}")]
    Format(u32),
}

fn load(path: &Path) -> Result<Option<JournalEntry>, LoadError> {
    let bytes = match crate::state_file::read(path, MAX_JOURNAL_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Err(LoadError::TooLarge),
        Err(e) => return Err(e.into()),
    };
    let entry: JournalEntry = serde_json::from_slice(&bytes)?;
    if entry.format != FORMAT {
        return Err(LoadError::Format(entry.format));
    }
    Ok(Some(entry))
}

/// Replaces `path` with `entry` so that a crash at any point leaves either the old or the
/// new journal, never a torn one.
fn write_atomically(path: &Path, entry: &JournalEntry) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(entry)? + "\n";
    crate::state_file::replace(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Vec<(String, String)> {
        vec![
            ("boot".into(), "aa".repeat(32)),
            ("system".into(), "bb".repeat(32)),
            ("vendor".into(), "cc".repeat(32)),
        ]
    }

    #[test]
    fn a_fresh_job_has_nothing_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, resume, note) =
            Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        assert!(resume.is_none() && note.is_none());
        assert!(journal.path().exists());
        assert_eq!(journal.state(0), Some(ImageState::Pending));
    }

    #[test]
    fn the_same_job_resumes_after_the_last_verified_image() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        journal.mark(0, ImageState::Verified);
        journal.mark(1, ImageState::Started);
        drop(journal); // as if flashline were killed here
        let (journal, resume, note) =
            Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        let resume = resume.expect("resumable");
        assert_eq!(resume.verified, vec![0]);
        assert_eq!(resume.interrupted, Some((1, ImageState::Started)));
        assert!(note.is_none());
        assert_eq!(journal.state(0), Some(ImageState::Verified));
        assert_eq!(journal.state(1), Some(ImageState::Pending));
        assert!(journal.finish().is_none());
        let (_, resume, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        assert!(resume.is_none(), "a finished job leaves nothing to resume");
    }

    #[test]
    fn another_package_or_image_list_starts_over_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        journal.mark(0, ImageState::Verified);
        let (_, resume, note) = Journal::open(dir.path(), "SN1", "dev", "p2", "pkg 2", &images());
        assert!(resume.is_none());
        assert!(note.unwrap().contains("pkg 1"));
        let mut other = images();
        other[2].1 = "dd".repeat(32);
        let (mut journal, _, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        journal.mark(0, ImageState::Verified);
        let (_, resume, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &other);
        assert!(resume.is_none(), "a different image list is not resumed");
    }

    #[test]
    fn serials_that_clean_alike_never_share_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _, _) = Journal::open(dir.path(), "a/b", "dev", "p1", "pkg", &images());
        let (b, _, _) = Journal::open(dir.path(), "a_b", "dev", "p1", "pkg", &images());
        assert_ne!(a.path(), b.path());
        let (c, _, _) = Journal::open(
            dir.path(),
            "../../etc/passwd",
            "dev",
            "p1",
            "pkg",
            &images(),
        );
        assert_eq!(c.path().parent(), Some(dir.path()));
    }

    #[test]
    fn another_device_with_the_same_serial_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg", &images());
        journal.mark(0, ImageState::Verified);
        let (_, resume, note) = Journal::open(dir.path(), "SN1", "other", "p1", "pkg", &images());
        assert!(resume.is_none());
        assert!(note.unwrap().contains("may be another device"));
    }

    #[test]
    fn the_window_bounds_a_resume() {
        let now = SystemTime::now();
        let at = |age: Duration| humantime::format_rfc3339_millis(now - age).to_string();
        assert!(within_window(&at(Duration::from_secs(60)), now));
        assert!(!within_window(
            &at(RESUME_WINDOW + Duration::from_secs(60)),
            now
        ));
        let future = humantime::format_rfc3339_millis(now + Duration::from_secs(3600)).to_string();
        assert!(!within_window(&future, now), "a clock set back is outside");
        assert!(!within_window("yesterday", now));
    }

    #[test]
    fn a_damaged_journal_is_ignored_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let (journal, _, _) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        std::fs::write(journal.path(), b"{\"format\": 1, \"serial\": ").unwrap();
        let (_, resume, note) = Journal::open(dir.path(), "SN1", "dev", "p1", "pkg 1", &images());
        assert!(resume.is_none());
        assert!(note.unwrap().contains("damaged"));
    }

    #[test]
    fn write_failures_become_one_note() {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("not-a-dir");
        std::fs::write(&blocked, b"").unwrap();
        let (mut journal, _, _) = Journal::open(&blocked, "SN1", "dev", "p1", "pkg", &images());
        journal.mark(0, ImageState::Started);
        let note = journal.take_failures().unwrap();
        assert!(note.contains("could not be kept"), "{note}");
        assert!(journal.take_failures().is_none());
    }
}
