//! The phone's fastboot-mode firmware: what it answers and what it refuses.
//!
//! It behaves like a bootloader's fastboot (ABL-style), and where devices differ it picks:
//!
//! * `set_active` changes `current-slot` at once; the reported firmware version changes
//!   only when the phone boots again (`reboot`, `reboot-bootloader`, `continue`), and
//!   then comes from the version partition of the active slot (see [`Bootloader::boot`]).
//! * `slot-count` is `0` on a phone without slots (as fastbootd answers); `current-slot`,
//!   `slot-*` and, without a battery, `battery-*` are unknown variables there.
//! * `has-slot:<base>` is `yes` for a slotted base name, `no` for any other partition,
//!   and unknown for names not in the table; Google's client reads FAIL as `no`. On an A/B
//!   phone the partitions real A/B phones keep once ([`UNSLOTTED`]) have no slots.
//! * Locked ([`PhoneConfig::locked`]): `unlocked` is `no`, and `flash`/`erase` fail with a
//!   locked Qualcomm ABL's own messages ([`LOCKED_FLASH`], [`LOCKED_ERASE`]).
//! * With a write rate ([`PhoneConfig::write_rate`]), `flash` and `erase` answer only once
//!   their bytes would be written at that rate, silently: no INFO while writing.
//! * A download cut short by the host closing the connection is lost, unless
//!   [`PhoneConfig::keep_download_on_close`] makes it wait, as over USB, for the rest:
//!   the next connection's bytes (command frames included) are taken as its data.
//! * `battery-soc-ok` is `yes` from [`BATTERY_OK_PERCENT`] on.
//! * `erase` fills with zeros; raw `flash` writes from offset 0 and keeps the rest; a
//!   sparse `flash` writes RAW/FILL blocks only, so split images add up.
//! * The download stays available after `flash` until the next `download`.
//! * A phone with dynamic partitions ([`PhoneConfig::dynamic`]) also has a userspace
//!   fastboot, fastbootd ([`super::fastbootd`]): `reboot-fastboot` takes it there, and
//!   `reboot-bootloader` back; each switch is a reboot (the link drops, the phone is away
//!   for [`BOOT_TIME`]). Its bootloader has no logical partitions: flashing one (any name
//!   not in its table) fails with a Qualcomm ABL's words ([`abl_no_partition`]), as
//!   modern phones' bootloaders are ABL-like; `flash:super` with a whole
//!   super image is accepted and, as on ABL, cancels a pending snapshot update.

use std::io::{self, BufReader, Read, Seek};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::protocol::fastboot::vars::split_variable;
use crate::protocol::fastboot::{Command, Response, MAX_COMMAND_LEN};
use crate::protocol::sparse::{self, Validate};

use super::dynamic::SnapshotStatus;
use super::link::{Incoming, Link, Wire};
use super::storage::{Meter, Partition, Storage};
use super::{version, PhoneConfig};
use crate::sim::fault::{self, Cut, Injector, Match, Reaction};

mod verbs;

/// `battery-soc-ok` is `yes` from this charge on; below it a real phone refuses to flash.
pub const BATTERY_OK_PERCENT: u8 = 10;
/// How long the phone is away when an injected fault makes it boot (power loss, a reboot
/// into its OS and back): connections made meanwhile are closed unserved.
pub const BOOT_TIME: Duration = Duration::from_millis(300);
/// The reason in the `FAIL` of an injected failure.
const INJECTED_FAILURE: &str = "injected fault: command refused";
/// Slot letters of an A/B phone, in index order.
pub(super) const SLOTS: [char; 2] = ['a', 'b'];
/// Partitions an A/B phone keeps once, whatever its slots: device identity and calibration
/// (persist, modemst1/2, fsg, fsc), boot control (misc), user data and its metadata, and
/// factory reset protection. Source: AOSP's A/B documentation (userdata, metadata and misc
/// are not slotted) and public `getvar all` dumps of A/B phones, which list `has-slot:`
/// `no` for these names.
pub(super) const UNSLOTTED: &[&str] = &[
    "persist", "misc", "modemst1", "modemst2", "fsg", "fsc", "frp", "userdata", "metadata",
];
/// A locked Qualcomm ABL's answer to `flash:`; public source: `CmdFlash` in
/// QcomModulePkg/Application/FastbootApp/FastbootCmds.c (github.com/SHIFTPHONES/
/// android_bootable_bootloader_edk2), and users' transcripts (`Writing 'boot_a' FAILED
/// (remote: 'Flashing is not allowed in Lock State')`).
pub(super) const LOCKED_FLASH: &str = "Flashing is not allowed in Lock State";
/// A locked Qualcomm ABL's answer to `erase:` (`CmdErase`, same file).
pub(super) const LOCKED_ERASE: &str = "Erase is not allowed in Lock State";

/// Whether an A/B phone keeps `base` once (see [`UNSLOTTED`]).
pub(super) fn is_unslotted(base: &str) -> bool {
    UNSLOTTED.contains(&base)
}

/// Which firmware answers: the bootloader, or Android's userspace fastboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Bootloader,
    Fastbootd,
}

/// Everything that outlives a connection.
pub(super) struct Bootloader {
    pub(super) cfg: PhoneConfig,
    pub(super) storage: Storage,
    /// Length of the download kept in storage, if the last one completed.
    pub(super) download: Option<u64>,
    pub(super) slots: Option<Slots>,
    /// The firmware answering now.
    pub(super) mode: Mode,
    /// Virtual A/B merge state (dynamic phones); bootloader and fastbootd share it.
    pub(super) snapshot: SnapshotStatus,
    /// Version of the firmware the phone last booted.
    firmware_version: String,
    /// Anti-rollback level; it only ever rises.
    security_version: u64,
    /// Every command received, as text (see [`super::RunningPhone::commands`]).
    log: Arc<Mutex<Vec<String>>>,
    /// The fault plan being carried out.
    pub(super) faults: Injector,
    /// Until when the phone is booting and takes no connection.
    away_until: Option<Instant>,
    /// A download the host stopped sending when it closed its connection, still waiting
    /// for its bytes ([`PhoneConfig::keep_download_on_close`]).
    pending: Option<Pending>,
}

/// A download still owed bytes across connections.
struct Pending {
    /// Bytes announced.
    len: u64,
    /// Bytes stored so far.
    received: u64,
}

/// A/B state.
pub(super) struct Slots {
    /// Index into [`SLOTS`] of the slot the next boot uses.
    pub(super) active: usize,
    /// Whether each slot has booted successfully since it was last made active.
    successful: [bool; 2],
}

/// Whether the connection continues after a command.
pub(super) enum Flow {
    Next,
    Close,
}

impl Bootloader {
    pub fn new(
        cfg: PhoneConfig,
        storage: Storage,
        log: Arc<Mutex<Vec<String>>>,
        faults_fired: Arc<Mutex<Vec<String>>>,
    ) -> Self {
        // A replayed A/B device starts on the slot it listed; its partition names already
        // carry their suffixes.
        let replayed_slot = cfg.replay.as_ref().and_then(|r| r.current_slot());
        let slots = (cfg.slots || replayed_slot.is_some()).then(|| {
            let active = replayed_slot.unwrap_or(0);
            let mut successful = [false; 2];
            successful[active] = true;
            Slots { active, successful }
        });
        let faults = Injector::new(&cfg.faults, faults_fired);
        let snapshot = cfg
            .dynamic
            .as_ref()
            .map_or(SnapshotStatus::None, |d| d.snapshot);
        let mut bootloader = Bootloader {
            mode: Mode::Bootloader,
            snapshot,
            firmware_version: cfg.firmware_version.clone(),
            security_version: cfg.security_version,
            cfg,
            storage,
            download: None,
            slots,
            log,
            faults,
            away_until: None,
            pending: None,
        };
        bootloader.boot();
        bootloader
    }

    /// Serves one host session until the host closes it (TCP) or asks for a reboot.
    pub fn serve(&mut self, wire: Wire) -> io::Result<()> {
        let mut link = Link::accept(wire, self.cfg.link_rate)?;
        if let Some(pending) = self.pending.take() {
            if let Flow::Close = self.receive(&mut link, pending)? {
                return Ok(());
            }
        }
        loop {
            let bytes = match link.next_command()? {
                Incoming::Closed => return Ok(()),
                Incoming::TooLong(len) => {
                    self.record(format!("<{len}-byte command>"));
                    return link.send(&Response::Fail(format!(
                        "command of {len} bytes exceeds the {MAX_COMMAND_LEN}-byte limit"
                    )));
                }
                Incoming::Command(bytes) => bytes,
            };
            if !self.cfg.latency.is_zero() {
                std::thread::sleep(self.cfg.latency);
            }
            let command = match Command::parse(&bytes) {
                Ok(command) => command,
                Err(e) => {
                    self.record(format!("<malformed: {}>", String::from_utf8_lossy(&bytes)));
                    link.send(&Response::Fail(format!("malformed command: {e}")))?;
                    continue;
                }
            };
            let text = command.to_string();
            self.record(text.clone());
            let flow = match self.faults.on_command(&text, Match::Exact) {
                Some(reaction) => self.misbehave(reaction, &mut link)?,
                None => self.execute(command, &mut link)?,
            };
            if let Flow::Close = flow {
                return Ok(());
            }
        }
    }

    /// Whether the phone is still booting after an injected fault.
    pub fn is_away(&self) -> bool {
        self.away_until.is_some_and(|until| Instant::now() < until)
    }

    /// Does what an injected command fault says instead of executing the command.
    fn misbehave(&mut self, reaction: Reaction, link: &mut Link) -> io::Result<Flow> {
        match reaction {
            Reaction::Fail => link.send(&Response::Fail(INJECTED_FAILURE.into()))?,
            Reaction::Garbage => link.send_frame(&fault::garbage(b""))?,
            Reaction::Stall => {
                link.ignore_until_closed();
                return Ok(Flow::Close);
            }
            Reaction::Reenumerate => {
                self.restart();
                return Ok(Flow::Close);
            }
            // The link is gone before anything happened: same mode, storage as it was.
            Reaction::Drop => return Ok(Flow::Close),
        }
        Ok(Flow::Next)
    }

    /// The phone goes away and boots again: what is in RAM (the download) is lost, the
    /// boot reads the version partition, and for [`BOOT_TIME`] nobody answers.
    fn restart(&mut self) {
        self.enter(Mode::Bootloader);
    }

    /// Reboots into `mode`: what is in RAM (the download) is lost, the boot reads the
    /// version partition, and for [`BOOT_TIME`] nobody answers.
    pub(super) fn enter(&mut self, mode: Mode) {
        self.download = None;
        self.pending = None;
        self.mode = mode;
        self.boot();
        self.away_until = Some(Instant::now() + BOOT_TIME);
    }

    fn record(&self, entry: String) {
        tracing::debug!(command = %entry, "phone sim");
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entry);
    }

    fn execute(&mut self, command: Command, link: &mut Link) -> io::Result<Flow> {
        if self.mode == Mode::Fastbootd {
            return self.execute_fastbootd(command, link);
        }
        let response = match command {
            Command::GetVar(name) if name == "all" => {
                let (lines, last) = self.all_vars();
                for line in lines {
                    link.send(&Response::Info(line))?;
                }
                Response::Okay(last)
            }
            Command::GetVar(name) => match self.var(&name) {
                Some(value) => Response::Okay(value),
                None => Response::Fail("unknown variable".into()),
            },
            Command::Download(len) => return self.download(len, link),
            Command::Flash(_) if self.cfg.locked => Response::Fail(LOCKED_FLASH.into()),
            Command::Erase(_) if self.cfg.locked => Response::Fail(LOCKED_ERASE.into()),
            Command::Flash(name)
                if self.cfg.dynamic.is_some() && self.storage.get(&name).is_none() =>
            {
                Response::Fail(abl_no_partition(&name, self.download_is_sparse()))
            }
            Command::Flash(name) => {
                let Some(response) = self.flash_physical(&name, link)? else {
                    return Ok(Flow::Close);
                };
                if name == "super" && matches!(response, Response::Okay(_)) {
                    // ABL cancels a pending snapshot update when super is flashed whole.
                    self.snapshot = SnapshotStatus::None;
                }
                response
            }
            Command::Erase(name) => match self.storage.get(&name) {
                Some(part) => {
                    let started = Instant::now();
                    let size = part.size;
                    match self.storage.erase(part) {
                        Ok(()) => {
                            self.take_write_time(started, size);
                            Response::Okay(String::new())
                        }
                        Err(e) => Response::Fail(format!("erasing {name} failed: {e}")),
                    }
                }
                None => Response::Fail(format!("unknown partition '{name}'")),
            },
            Command::SetActive(slot) => self.set_active(&slot),
            Command::Reboot | Command::RebootBootloader | Command::Continue => {
                link.send(&Response::Okay(String::new()))?;
                self.boot();
                return Ok(Flow::Close);
            }
            Command::Other(verb) if verb == "reboot-fastboot" && self.cfg.dynamic.is_some() => {
                link.send(&Response::Okay(String::new()))?;
                self.enter(Mode::Fastbootd);
                return Ok(Flow::Close);
            }
            Command::Other(text) => return self.other(&text, link),
        };
        link.send(&response)?;
        Ok(Flow::Next)
    }

    /// Flashes a partition of the partition table, raw or sparse, answering as the
    /// bootloader does; `None` when the phone lost power during the write (no answer).
    pub(super) fn flash_physical(
        &mut self,
        name: &str,
        link: &mut Link,
    ) -> io::Result<Option<Response>> {
        let image = match self.check_flash(name) {
            Ok(image) => image,
            Err(reason) => return Ok(Some(Response::Fail(reason))),
        };
        // A phone with a write rate models LK and U-Boot: silent until OKAY.
        if self.cfg.write_rate.is_none() {
            link.send(&Response::Info(format!(
                "writing {} bytes of {} image to {name}",
                image.len,
                if image.sparse { "sparse" } else { "raw" }
            )))?;
        }
        let mut meter = Meter::new(self.faults.write_budget());
        let started = Instant::now();
        let response = self.write_flash(&image, &mut meter);
        self.take_write_time(started, meter.written());
        Ok(self.after_write(meter.written()).then_some(response))
    }

    /// Counts bytes written towards the fault plan; false if the power was cut by them
    /// (the phone then restarts and gives no answer).
    pub(super) fn after_write(&mut self, written: u64) -> bool {
        self.faults.add_written(written);
        if let Some(Cut::Power) = self.faults.cut() {
            // The partition keeps what was written; the phone dies unanswered.
            self.restart();
            return false;
        }
        true
    }

    /// Whether the stored download starts like an Android sparse image.
    pub(super) fn download_is_sparse(&self) -> bool {
        let mut magic = [0u8; 4];
        self.download.is_some()
            && self
                .open_download()
                .is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
            && sparse::looks_sparse(&magic)
    }

    /// The largest download the firmware answering now takes.
    pub(super) fn max_download_size(&self) -> u32 {
        match (self.mode, &self.cfg.dynamic) {
            (Mode::Fastbootd, Some(d)) => d.fastbootd_max_download_size,
            _ => self.cfg.max_download_size,
        }
    }

    /// Receives a download into storage. Any failure during the data phase leaves the
    /// stream out of step, so the phone says FAIL and drops the connection.
    pub(super) fn download(&mut self, len: u32, link: &mut Link) -> io::Result<Flow> {
        self.download = None;
        let max = self.max_download_size();
        let refusal = if len == 0 {
            Some("download size must not be zero".to_string())
        } else if len > max {
            Some(format!(
                "download of {len} bytes exceeds max-download-size {max}"
            ))
        } else {
            None
        };
        if let Some(reason) = refusal {
            link.send(&Response::Fail(reason))?;
            return Ok(Flow::Next);
        }
        let file = match self.storage.open_download_at(0) {
            Ok(file) => file,
            Err(e) => {
                link.send(&Response::Fail(format!("cannot store download: {e}")))?;
                return Ok(Flow::Next);
            }
        };
        drop(file);
        link.send(&Response::Data(len))?;
        self.receive(
            link,
            Pending {
                len: u64::from(len),
                received: 0,
            },
        )
    }

    /// Receives the rest of a download's data phase into storage and answers it.
    fn receive(&mut self, link: &mut Link, pending: Pending) -> io::Result<Flow> {
        let Pending { len, received } = pending;
        let file = match self.storage.open_download_at(received) {
            Ok(file) => file,
            Err(e) => {
                link.send(&Response::Fail(format!("cannot store download: {e}")))?;
                return Ok(Flow::Next);
            }
        };
        let left = len - received;
        let limit = self
            .faults
            .receive_budget()
            .map_or(left, |budget| budget.min(left));
        let mut got = 0;
        let result = link.receive_data(left, limit, &file, &mut got);
        self.faults.add_received(got);
        if result.is_ok() && self.faults.cut().is_some() {
            // The cable is pulled: no answer, and the download never completed.
            return Ok(Flow::Close);
        }
        match result.and_then(|()| file.set_len(len)) {
            Ok(()) => {
                self.download = Some(len);
                link.send(&Response::Okay(String::new()))?;
                Ok(Flow::Next)
            }
            Err(e) if self.cfg.keep_download_on_close && host_went_away(&e) => {
                // The host went away; the phone did not notice and still expects the rest.
                self.pending = Some(Pending {
                    len,
                    received: received + got,
                });
                Ok(Flow::Close)
            }
            Err(e) => {
                // Best effort: the host may already be gone.
                let _ = link.send(&Response::Fail(format!("download failed: {e}")));
                Err(e)
            }
        }
    }

    /// Holds the answer to a `flash` or `erase` until `bytes` would have been written at the
    /// configured write rate, counting the time the write itself took.
    fn take_write_time(&self, started: Instant, bytes: u64) {
        let Some(rate) = self.cfg.write_rate else {
            return;
        };
        let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
        if let Some(left) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(left);
        }
    }

    /// Checks everything a flash depends on before a byte is written.
    fn check_flash(&self, name: &str) -> Result<FlashImage, String> {
        let len = self
            .download
            .ok_or("no image downloaded: send download first")?;
        let part = self
            .storage
            .get(name)
            .ok_or_else(|| format!("unknown partition '{name}'"))?
            .clone();
        let mut file = self.open_download()?;
        let mut magic = [0u8; 4];
        let sparse = file.read_exact(&mut magic).is_ok() && sparse::looks_sparse(&magic);
        let fits = if sparse {
            file.rewind()
                .map_err(|e| format!("cannot read the download: {e}"))?;
            let header = sparse::expand(BufReader::new(file), &mut Validate)
                .map_err(|e| format!("malformed sparse image: {e}"))?;
            header.expanded_len()
        } else {
            len
        };
        if sparse && self.cfg.raw_only.iter().any(|p| p == name) {
            return Err(format!("sparse images are not supported for {name}"));
        }
        if fits > part.size {
            return Err(format!(
                "image needs {fits} bytes but partition {name} holds {}",
                part.size
            ));
        }
        Ok(FlashImage { part, len, sparse })
    }

    fn write_flash(&self, image: &FlashImage, meter: &mut Meter) -> Response {
        let source = match self.open_download() {
            Ok(file) => BufReader::new(file),
            Err(reason) => return Response::Fail(reason),
        };
        let result = if image.sparse {
            self.storage
                .write_sparse(&image.part, source, meter)
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            self.storage
                .write_raw(&image.part, source, image.len, meter)
                .map_err(|e| e.to_string())
        };
        match result {
            Ok(()) => Response::Okay(String::new()),
            Err(e) => Response::Fail(format!("writing {} failed: {e}", image.part.name)),
        }
    }

    pub(super) fn open_download(&self) -> Result<std::fs::File, String> {
        self.storage
            .open_download()
            .map_err(|e| format!("cannot read the download: {e}"))
    }

    pub(super) fn set_active(&mut self, slot: &str) -> Response {
        let Some(slots) = &mut self.slots else {
            return Response::Fail("device has no slots".into());
        };
        match slot_index(slot) {
            Some(index) => {
                slots.active = index;
                slots.successful[index] = false;
                Response::Okay(String::new())
            }
            None => Response::Fail(format!("invalid slot '{slot}': expected a or b")),
        }
    }

    /// What happens at power-on: the active slot counts as booted, and the reported
    /// versions come from the image in its version partition. An image without a marker
    /// reports the configured firmware version; the security level never decreases.
    pub fn boot(&mut self) {
        if let Some(slots) = &mut self.slots {
            slots.successful[slots.active] = true;
        }
        let marker = self.version_partition().and_then(|part| {
            match self.storage.read_prefix(part, version::MARKER_WINDOW) {
                Ok(prefix) => version::find(&prefix),
                Err(e) => {
                    tracing::warn!(partition = %part.name, "cannot read version: {e}");
                    None
                }
            }
        });
        match marker {
            Some(marker) => {
                self.firmware_version = marker.version;
                self.security_version = self.security_version.max(marker.security.unwrap_or(0));
            }
            None => self.firmware_version = self.cfg.firmware_version.clone(),
        }
    }

    /// The partition the phone boots from: `version_partition`, with the active slot's
    /// suffix on an A/B phone.
    fn version_partition(&self) -> Option<&Partition> {
        let base = self.cfg.version_partition.as_deref()?;
        match &self.slots {
            Some(slots) => self.storage.get(&format!("{base}_{}", SLOTS[slots.active])),
            None => self.storage.get(base),
        }
    }

    /// Answers `getvar:<name>`, as the replayed device or the profile words it; `None`
    /// means "unknown variable".
    fn var(&self, name: &str) -> Option<String> {
        if let Some(replay) = &self.cfg.replay {
            let recorded = replay.answer(name)?;
            // The slot it runs follows `set_active`, in the device's own wording (`b`/`_b`).
            return match (&self.slots, name) {
                (Some(slots), "current-slot") => {
                    let underscore = if recorded.trim().starts_with('_') {
                        "_"
                    } else {
                        ""
                    };
                    Some(format!("{underscore}{}", SLOTS[slots.active]))
                }
                _ => Some(recorded),
            };
        }
        match self.cfg.profile {
            Some(profile) => profile.value(name, &|n| self.own_var(n)),
            None => self.own_var(name),
        }
    }

    /// The phone's own answer to `getvar:<name>`, in flashline's plain wording.
    pub(super) fn own_var(&self, name: &str) -> Option<String> {
        let (key, arg) = match name.split_once(':') {
            Some((key, arg)) => (key, Some(arg)),
            None => (name, None),
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let value = match (key, arg) {
            ("version", None) => "0.4".to_string(),
            ("product", None) => self.cfg.product.clone(),
            ("serialno", None) => self.cfg.serial.clone(),
            ("secure", None) => yes_no(true),
            ("unlocked", None) => yes_no(!self.cfg.locked),
            ("max-download-size", None) => format!("0x{:X}", self.cfg.max_download_size),
            ("version-bootloader", None) => self.firmware_version.clone(),
            ("security-version", None) => self.security_version.to_string(),
            ("battery-soc", None) => self.battery()?.to_string(),
            ("battery-soc-ok", None) => yes_no(self.battery()? >= BATTERY_OK_PERCENT),
            ("slot-count", None) => if self.slots.is_some() { "2" } else { "0" }.to_string(),
            // A dynamic phone's bootloader knows about super and the update state, as
            // Pixel bootloaders report them (tests/data/fastboot/pixel-7-pro.txt).
            ("is-userspace", None) if self.cfg.dynamic.is_some() => yes_no(false),
            ("super-partition-name", None) if self.cfg.dynamic.is_some() => self.super_name(),
            ("snapshot-update-status", None) if self.cfg.dynamic.is_some() => {
                self.snapshot.to_string()
            }
            ("current-slot", None) => SLOTS[self.slots.as_ref()?.active].to_string(),
            ("slot-successful", Some(slot)) => {
                yes_no(self.slots.as_ref()?.successful[slot_index(slot)?])
            }
            ("slot-unbootable", Some(slot)) => {
                self.slots.as_ref()?;
                slot_index(slot)?;
                yes_no(false)
            }
            ("partition-size", Some(p)) => format!("0x{:X}", self.storage.get(p)?.size),
            ("partition-type", Some(p)) => {
                self.storage.get(p)?;
                self.cfg.partition_type(p)
            }
            ("is-logical", Some(p)) => {
                self.storage.get(p)?;
                yes_no(false)
            }
            ("has-slot", Some(p)) => {
                let slotted = self.slots.is_some()
                    && !is_unslotted(p)
                    && self.storage.get(&format!("{p}_a")).is_some();
                if !slotted {
                    self.storage.get(p)?;
                }
                yes_no(slotted)
            }
            _ => return None,
        };
        Some(value)
    }

    /// A replayed `getvar all` line, as sent, but for the slot letter of a `current-slot`
    /// line, which follows `set_active` (the device lists the slot it runs).
    fn replayed_slot_line(&self, line: &str) -> String {
        let Some(slots) = &self.slots else {
            return line.to_string();
        };
        match split_variable(line) {
            Some((name, value)) if name == "current-slot" && line.ends_with(value.as_str()) => {
                let letter = SLOTS[slots.active].to_string();
                let kept = &line[..line.len() - value.len()];
                let underscore = if value.starts_with('_') { "_" } else { "" };
                format!("{kept}{underscore}{letter}")
            }
            _ => line.to_string(),
        }
    }

    /// The charge the battery reports, after any injected drop.
    fn battery(&self) -> Option<u8> {
        self.cfg.battery_percent.map(|p| self.faults.battery(p))
    }

    /// `getvar:all`: the INFO lines (`name:value`, per-partition ones as
    /// `name:partition:value`, worded as the profile says) and the final OKAY's text.
    fn all_vars(&self) -> (Vec<String>, String) {
        if let Some(replay) = &self.cfg.replay {
            let listing = replay
                .listing()
                .iter()
                .map(|line| self.replayed_slot_line(line))
                .collect();
            return (listing, replay.final_okay().to_string());
        }
        let mut names: Vec<String> = [
            "version",
            "version-bootloader",
            "product",
            "serialno",
            "secure",
            "unlocked",
            "max-download-size",
            "security-version",
            "battery-soc",
            "battery-soc-ok",
            "slot-count",
            "current-slot",
        ]
        .map(String::from)
        .to_vec();
        if self.cfg.dynamic.is_some() {
            names.extend(
                [
                    "is-userspace",
                    "super-partition-name",
                    "snapshot-update-status",
                ]
                .map(String::from),
            );
        }
        for slot in SLOTS {
            names.push(format!("slot-successful:{slot}"));
            names.push(format!("slot-unbootable:{slot}"));
        }
        for part in self.storage.partitions() {
            for var in ["partition-size", "partition-type", "is-logical"] {
                names.push(format!("{var}:{}", part.name));
            }
        }
        for (base, _) in &self.cfg.partitions {
            names.push(format!("has-slot:{base}"));
        }
        if let Some(profile) = self.cfg.profile {
            names.extend(profile.extra_names().iter().map(|n| n.to_string()));
        }
        let vars = names
            .into_iter()
            .filter_map(|name| Some((name.clone(), self.var(&name)?)));
        match self.cfg.profile {
            Some(profile) => profile.listing(vars.collect()),
            None => (
                vars.map(|(n, v)| format!("{n}:{v}")).collect(),
                String::new(),
            ),
        }
    }
}

/// Whether a data phase ended because the host closed or reset its connection.
fn host_went_away(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// A download that passed every check for one partition.
struct FlashImage {
    part: Partition,
    len: u64,
    sparse: bool,
}

/// A Qualcomm ABL's answer to `flash:` of a name its partition table lacks, which is
/// what every logical partition is to a bootloader: `Partition not found` for a sparse
/// image, `(<name>) No such partition` for a raw one. Public source: `CmdFlash` in
/// QcomModulePkg/Application/FastbootApp/FastbootCmds.c (Qualcomm's edk2 ABL, e.g.
/// github.com/SHIFTPHONES/android_bootable_bootloader_edk2).
pub(super) fn abl_no_partition(name: &str, sparse: bool) -> String {
    if sparse {
        "Partition not found".to_string()
    } else {
        format!("({name}) No such partition")
    }
}

/// `a`/`b`, with or without the leading underscore some hosts send.
pub(super) fn slot_index(slot: &str) -> Option<usize> {
    let letter = slot.strip_prefix('_').unwrap_or(slot);
    SLOTS
        .iter()
        .position(|s| letter.len() == 1 && letter.starts_with(*s))
}
