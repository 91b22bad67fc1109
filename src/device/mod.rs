//! Devices: what they are, what they report, and one driver per device family.
//!
//! A driver turns "write this image to that partition" into protocol commands. It never
//! decides whether a write is allowed — the engine's preflight does that — and it knows
//! nothing of packages: images reach it as [`ImageSource`]s whose bytes are hashed on their
//! way to the device.

pub mod bench;
pub mod discovery;
pub mod dynamic;
pub mod edl;
pub mod edl_delta;
pub mod fastboot;
pub mod modem;
pub mod quirks;
mod read_ahead;
pub mod unisoc;
pub mod zxic;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use serde::Serialize;

use crate::protocol::at::AtError;
use crate::protocol::fastboot::client::FastbootError;
use crate::protocol::firehose::FirehoseError;
use crate::protocol::sahara::SaharaError;
use crate::protocol::sparse::SparseError;
use crate::protocol::unisoc::UnisocError;
use crate::transport::TransportError;

/// The protocol family a device speaks in its current mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Android bootloader / fastbootd.
    Fastboot,
    /// A modem or hotspot answering AT commands.
    Modem,
    /// Qualcomm emergency download (Sahara, then Firehose).
    Edl,
    /// A Qualcomm DIAG port (a modem in factory mode): flashline only ever sends it the
    /// request that reboots the modem into EDL.
    Diag,
    /// A ZXIC ZX297520V3 device in its boot ROM or its download loader (TBootPro).
    Zxic,
    /// A Unisoc (Spreadtrum) device in its boot ROM's download mode (FDL1, then FDL2).
    Unisoc,
    /// Not identified (a serial port the quirks file does not name).
    Unknown,
}

/// What a device says about its battery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "percent")]
pub enum Battery {
    /// Charge in percent.
    Percent(u8),
    /// The device only says its charge is enough to flash (`battery-soc-ok: yes`).
    SufficientForFlashing,
    /// The device says its charge is too low to flash (`battery-soc-ok: no`).
    TooLowForFlashing,
    /// The device has no battery (e.g. a USB dongle).
    NoBattery,
    /// The device does not say.
    Unknown,
}

/// Whether the bootloader will accept flash and erase commands, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockState {
    /// `unlocked: yes`: writes are accepted.
    Unlocked,
    /// `unlocked: no` (or `secure: yes` with no `unlocked`): writes will be refused.
    Locked,
    /// The bootloader does not say.
    Unknown,
}

/// A/B slot facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slots {
    /// The slot the device boots now (`a`, `b`).
    pub current: String,
    /// Number of slots.
    pub count: u32,
}

/// Identity and preflight facts, as read from the device.
///
/// Every string here came from the device: untrusted, length-capped, and never used in a
/// file path unsanitised.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceInfo {
    /// Where the device was reached (`tcp:…`, `usb:…`).
    pub address: String,
    /// The protocol family.
    pub mode: Mode,
    /// The product/model the device reports.
    pub product: Option<String>,
    /// The serial number (the USB serial where known).
    pub serial: Option<String>,
    /// The IMEI, for modems and hotspots.
    pub imei: Option<String>,
    /// The firmware version as the device reports it.
    pub firmware_version_raw: Option<String>,
    /// The firmware version as a comparable version, per the quirks file.
    pub firmware_version: Option<semver::Version>,
    /// The anti-rollback security version.
    pub security_version: Option<u64>,
    /// The security version as the device reports it (kept when it does not parse).
    pub security_version_raw: Option<String>,
    /// Battery state.
    pub battery: Battery,
    pub lock: LockState,
    /// Partition sizes in bytes, by name as the device reports them (`boot_a`).
    pub partitions: BTreeMap<String, u64>,
    /// Partitions the device names without a size that can be read; never dropped.
    pub partitions_size_unknown: BTreeSet<String>,
    /// A/B slots, if the device has them.
    pub slots: Option<Slots>,
    /// True for flashline's own virtual devices.
    pub is_virtual: bool,
    /// Physical partitions (LUNs), for devices that expose raw storage (EDL).
    pub luns: Vec<Lun>,
    /// Where each named partition lives, read from the device's partition tables (EDL).
    pub layout: Vec<PartitionLocation>,
    /// What the boot ROM said about its chip in Sahara command mode (EDL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip: Option<crate::protocol::sahara::ChipIdentity>,
}

/// What a boot ROM says about itself in its own download protocol (Unisoc: its version
/// string, which tells whether it enforces secure boot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootRom {
    /// The version string, cleaned.
    pub version: String,
    /// Whether it runs only signed loaders.
    pub secure_boot: bool,
}

/// Device strings longer than this are cut: they are shown to people and put in reports.
const MAX_DEVICE_STRING: usize = 64;

/// Makes a device string safe to show and store: printable ASCII, trimmed, capped.
pub(crate) fn clean(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_DEVICE_STRING)
        .collect()
}

/// Device text made safe for a terminal: every control character (C0, DEL, C1: ESC, BEL,
/// carriage return, line breaks, …) and every character that reorders or hides text (bidi
/// controls, zero-width marks) is written as an escape such as `\u{1b}`.
///
/// [`clean`] already strips what a driver stores; this is for text shown to people that may
/// carry device words a driver did not clean (a fastboot FAIL reason, a USB descriptor, an
/// error quoting either), so a device cannot retitle a window, move the cursor, fake a line
/// or ring the bell on the technician's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    escape_if(text, |_| false)
}

/// [`printable`] for several lines of flashline's own making: line breaks stay.
pub fn printable_lines(text: &str) -> std::borrow::Cow<'_, str> {
    escape_if(text, |c| c == '\n')
}

fn escape_if(text: &str, keep: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        !keep(c)
            && (c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}'))
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One physical partition (eMMC user area, UFS LUN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lun {
    /// `physical_partition_number`.
    pub index: u32,
    /// Bytes per sector.
    pub sector_size: u32,
    /// Sectors in all.
    pub sectors: u64,
}

/// Where a named partition lives on raw storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLocation {
    /// Its label in the partition table (untrusted device text).
    pub label: String,
    /// The LUN.
    pub lun: u32,
    /// First sector.
    pub start_sector: u64,
    /// Number of sectors.
    pub sectors: u64,
}

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The link failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The fastboot exchange failed or the device refused.
    #[error(transparent)]
    Fastboot(#[from] FastbootError),
    /// The AT exchange failed or the modem refused.
    #[error(transparent)]
    At(#[from] AtError),
    /// The Sahara exchange with the boot ROM failed.
    #[error("loading the programmer failed: {0}")]
    Sahara(#[from] SaharaError),
    /// The Firehose exchange failed or the programmer refused.
    #[error(transparent)]
    Firehose(#[from] FirehoseError),
    /// The ZXIC boot ROM or TBootPro exchange failed or the device refused.
    #[error(transparent)]
    Zxic(#[from] crate::protocol::zxic::ZxicError),
    /// The image could not be split or read as a sparse image.
    #[error("image cannot be prepared for the device: {0}")]
    Sparse(#[from] SparseError),
    /// The bytes sent were not the bytes that were signed; the write was not committed.
    #[error("the image changed since it was verified ({0}); the write was not committed")]
    ImageChanged(String),
    /// Storage that commits as it receives (Firehose) now holds bytes that are not the
    /// signed image: the partition must be written again before the device is reset.
    #[error("{0}: the partition now holds bytes that are not the signed image; flash it again before resetting the device")]
    WrittenButDiffers(String),
    /// Reading the image failed.
    #[error("cannot read the image: {0}")]
    ImageRead(std::io::Error),
    /// The address names no device flashline can reach.
    #[error("{0}")]
    BadAddress(String),
    /// The device family cannot do what was asked.
    #[error("this kind of device does not support {0}")]
    Unsupported(&'static str),
    /// The device's partition table could not be read.
    #[error("the device's partition table is unreadable: {0}")]
    Layout(String),
    /// An image does not fit what the device can take in one transfer.
    #[error("{0}")]
    TooLarge(String),
    /// The device describes itself in a way no write can work with.
    #[error("the device reports {0}")]
    Reports(String),
    /// The Unisoc download exchange failed or a stage refused.
    #[error(transparent)]
    Unisoc(UnisocError),
}

/// Bytes to write, read twice at most: once to plan (optional), once to send.
///
/// The send reader hashes every byte it yields; [`SendReader::verify`] tells whether they
/// were exactly the signed bytes. A driver calls it before the command that commits the
/// image on the device, and does not commit if it fails.
pub trait ImageSource {
    /// Length of the image as stored (sparse images: the sparse file's length).
    fn len(&self) -> u64;
    /// Never true for a package image: images are non-empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether the image is an Android sparse image.
    fn is_sparse(&self) -> bool;
    /// A reader used only to plan (e.g. to split a large image). Its bytes are not trusted.
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>>;
    /// The reader whose bytes go to the device.
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>>;
    /// The signed hashes of the image's blocks, where it has them. Then the send reader
    /// checks each block before it hands out any byte of it (so no pass before sending
    /// is needed to keep changed bytes from the device), and a device's digest of a
    /// block-aligned range can be compared with them without reading the image.
    fn block_hashes(&self) -> Option<crate::hashing::BlockHashes> {
        None
    }
    /// A send reader starting at block `first` of [`ImageSource::block_hashes`], checking
    /// every block it reads; its `verify` succeeds once it was read to the image's end.
    fn send_reader_from(&self, _first: usize) -> std::io::Result<Box<dyn SendReader + '_>> {
        Err(std::io::Error::other(
            "this image has no block hashes to start part way through",
        ))
    }
}

/// A reader whose every byte is hashed; see [`ImageSource`].
pub trait SendReader: Read + Send {
    /// Checks that exactly the signed bytes were read; the error says what differed.
    fn verify(self: Box<Self>) -> Result<(), String>;
}

/// How a driver checked that storage holds what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verification {
    /// The device's own SHA-256 of the range (Firehose `<getsha256digest>`).
    DeviceDigest,
    /// The range read back and hashed by flashline (programmers without a digest command).
    ReadBack,
}

impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verification::DeviceDigest => "the device's own digest",
            Verification::ReadBack => "read back",
        })
    }
}

/// Progress of one transfer: bytes done so far.
pub type ProgressFn<'a> = dyn FnMut(u64) + 'a;

/// Where on a device an image goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Target {
    /// A partition the device knows by name (fastboot; slot suffix included).
    Partition {
        /// The name.
        name: String,
    },
    /// A run of sectors on one physical partition / LUN (Qualcomm Firehose).
    Sectors {
        /// LUN (`physical_partition_number`).
        lun: u32,
        /// First sector.
        start: u64,
        /// Number of sectors.
        count: u64,
        /// Bytes per sector.
        sector_size: u32,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Partition { name } => f.write_str(name),
            Target::Sectors {
                lun, start, count, ..
            } => write!(
                f,
                "LUN {lun} sectors {start}..{}",
                start.saturating_add(*count)
            ),
        }
    }
}

/// One driver per device family; the engine drives every family through this.
///
/// Like fwupd's device classes, a family implements what it can do and leaves the rest to
/// the defaults, which answer [`DeviceError::Unsupported`]. The engine only asks a driver
/// for what the package's plan needs (a fastboot plan writes partitions and switches
/// slots; a Qualcomm plan reads backups, writes sectors, patches and checks digests).
pub trait Driver: Send {
    /// Reads identity and preflight facts.
    fn identify(&mut self) -> Result<DeviceInfo, DeviceError>;

    /// The size of one partition, for devices whose identity listing left it out.
    fn partition_size(&mut self, _partition: &str) -> Result<Option<u64>, DeviceError> {
        Ok(None)
    }

    /// The value of a variable the device reports by name (fastboot `getvar`), or `None`
    /// when it does not know it. Used for a package's `[requires]` and `has-slot:<p>`.
    fn variable(&mut self, _name: &str) -> Result<Option<String>, DeviceError> {
        Ok(None)
    }

    /// Runs the package's programmer (Qualcomm EDL) and configures `memory` (`emmc`, `ufs`).
    fn load_programmer(
        &mut self,
        _programmer: &dyn ImageSource,
        _memory: &str,
    ) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("loading a programmer"))
    }

    /// Runs the package's chain of loaders, each at its load address, as a boot ROM takes
    /// them one after the other (Unisoc: FDL1, then FDL2).
    fn load_loaders(&mut self, _loaders: &[(&dyn ImageSource, u32)]) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("loading download-mode loaders"))
    }

    /// What the boot ROM said about itself, where its protocol says it (Unisoc).
    fn boot_rom(&self) -> Option<BootRom> {
        None
    }

    /// Does the part of [`Driver::write_image`] that writes nothing (reading the image,
    /// deciding how to send it) ahead of time, so that a problem with any image of a job
    /// shows before the first one is written. `write_image` does it itself when not asked.
    fn prepare(&mut self, _target: &Target, _image: &dyn ImageSource) -> Result<(), DeviceError> {
        Ok(())
    }

    /// Writes `image` to `target`. Where the protocol has a commit step (fastboot's `flash`)
    /// it is taken only if the bytes sent verify; storage that commits as it receives
    /// (Firehose) is checked afterwards and reports [`DeviceError::WrittenButDiffers`].
    fn write_image(
        &mut self,
        _target: &Target,
        _image: &dyn ImageSource,
        _progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("writing images"))
    }

    /// How the last successful [`Driver::write_image`] checked the storage afterwards, for
    /// storage that commits as it receives; `None` where the commit step itself verified.
    fn verified_by(&self) -> Option<Verification> {
        None
    }

    /// What the last successful [`Driver::write_image`] left out because the device
    /// already held it (or erased instead of writing), where the driver compares first.
    fn skipped(&self) -> Option<edl_delta::Skipped> {
        None
    }

    /// Marks `lun` as the one the device boots from (Firehose `<setbootablestoragedrive>`).
    fn set_boot_lun(&mut self, _lun: u32) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("choosing the boot LUN"))
    }

    /// Reads `target` into `out` and returns the SHA-256 of the bytes read.
    fn read(
        &mut self,
        _target: &Target,
        _out: &mut dyn std::io::Write,
        _progress: &mut ProgressFn<'_>,
    ) -> Result<[u8; 32], DeviceError> {
        Err(DeviceError::Unsupported("reading partitions"))
    }

    /// The device's own SHA-256 of `target`, where the device can compute one.
    fn digest(&mut self, _target: &Target) -> Result<Option<[u8; 32]>, DeviceError> {
        Ok(None)
    }

    /// After a failed job: puts the device where the same job run again can pick it up,
    /// and where it cannot boot half-written firmware (an EDL device goes back to its boot
    /// ROM in EDL). Best effort; the default does nothing.
    fn leave_for_recovery(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    /// Waits at most `silence` for any answer or transfer the device owes, instead of the
    /// protocol's own defaults (which allow for slow storage). A technician lowers it to
    /// give up on a hung device sooner; tests lower it so stalls end quickly. A fastboot
    /// `flash` or `erase` keeps the allowance its bytes need (silent writes are normal).
    fn set_timeout(&mut self, _silence: std::time::Duration) {}

    /// Whether `target` holds exactly `image` (as [`Driver::write_image`] would have left
    /// it), by the device's own digest; `None` when the device cannot tell. A resumed job
    /// uses it to confirm the images an interrupted run verified before it skips them.
    fn holds(
        &mut self,
        _target: &Target,
        _image: &dyn ImageSource,
    ) -> Result<Option<bool>, DeviceError> {
        Ok(None)
    }

    /// Erases `target`.
    fn erase(&mut self, _target: &Target) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("erasing"))
    }

    /// Writes `value` as `size` little-endian bytes at `byte_offset` of `target`'s first sector.
    fn patch(
        &mut self,
        _target: &Target,
        _byte_offset: u64,
        _size: u8,
        _value: u64,
    ) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("patching"))
    }

    /// Makes `slot` the one the device boots next.
    fn set_active_slot(&mut self, _slot: &str) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("A/B slots"))
    }

    /// Asks the device to leave for its download mode; it will come back as another USB
    /// device (fwupd's "detach").
    fn detach(&mut self) -> Result<(), DeviceError> {
        Err(DeviceError::Unsupported("switching to download mode"))
    }

    /// Reboots the device into its operating system.
    fn reboot(&mut self) -> Result<(), DeviceError>;

    /// The device's dynamic-partition commands (fastboot: fastbootd, `super`), where its
    /// family has them.
    fn dynamic(&mut self) -> Option<&mut dyn dynamic::DynamicPartitions> {
        None
    }

    /// The ZXIC-only operations, for a ZXIC device.
    fn zxic(&mut self) -> Option<&mut dyn zxic::ZxicOps> {
        None
    }

    /// Device messages (fastboot INFO lines, Firehose logs) gathered since the last call.
    fn take_messages(&mut self) -> Vec<String> {
        Vec::new()
    }

    /// The fastboot verbs a technician asks for by name (getvar, oem, erase, boot,
    /// flashing), on devices that speak fastboot.
    fn fastboot_verbs(&mut self) -> Option<&mut dyn fastboot::verbs::FastbootVerbs> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_are_cleaned() {
        assert_eq!(clean(" ok\x1b[31m\n"), "ok[31m");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_DEVICE_STRING);
    }

    #[test]
    fn printable_escapes_what_steers_a_terminal() {
        assert_eq!(printable("SN\x1b]0;x\x07"), "SN\\u{1b}]0;x\\u{7}");
        assert_eq!(printable("a\r\nb\u{9b}c"), "a\\u{d}\\u{a}b\\u{9b}c");
        assert_eq!(printable("\u{202e}gnp.exe"), "\\u{202e}gnp.exe");
        assert_eq!(printable_lines("one\ntwo\x1b[2J"), "one\ntwo\\u{1b}[2J");
        assert!(matches!(
            printable("plain ÄÖ"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
