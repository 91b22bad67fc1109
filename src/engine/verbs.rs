//! The fastboot verbs a technician asks for by name, outside a flash job: `getvar`, `oem`,
//! `erase`, `format`, `boot` of a signed image, and `flashing lock|unlock`.
//!
//! Each verb sends exactly what was asked and passes on what the device said, as
//! [`VerbEvent`]s. Two of them are guarded:
//!
//! * `boot` takes its image only from a verified package made for the device's product and
//!   signed by a key trusted for real devices, hashed on its way to the device, and `boot`
//!   is not sent unless the bytes that went out were exactly the signed ones.
//! * `flashing lock|unlock` (and `oem lock|unlock`, their older spelling) wipe the phone's
//!   user data. They are sent only through [`Session::flashing`] and [`Session::oem`] with
//!   a [`WipeConfirmed`] that only the user's explicit confirmation makes; no other path of
//!   flashline sends them.
//!
//! `format` wipes a partition too: it builds an empty filesystem image on this computer
//! for the `partition-type` and `partition-size` the device reports, as Google's client
//! does (see [`super::filesystem`]), and flashes it, sent as an Android sparse image. It
//! runs only with a [`WipeConfirmed`], and only for `ext4` and `f2fs`; a `raw` partition
//! is refused, as Google's client refuses it.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::filesystem::{self, Filesystem, FlashGeometry};
use super::job::PackageImage;
use super::preflight::{Overrides, Preflight, Status};
use crate::device::fastboot::verbs::{resolve, Answer, Reply, SlotChoice, SlotError, SlotFacts};
use crate::device::quirks::Quirks;
use crate::device::{discovery, DeviceError, Driver, Target};
use crate::package::{Package, PackageError, TrustStore, VerifiedPackage};
use crate::protocol::fastboot::vars::{parse_block_size, NumberStyle};

/// How long a person may take to confirm `flashing lock|unlock` on the phone's screen.
pub const CONFIRM_ON_DEVICE: Duration = Duration::from_secs(120);

/// What a verb did, step by step; front ends render these and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum VerbEvent {
    /// A command goes to the device.
    Sent {
        /// The command as sent.
        command: String,
    },
    /// An INFO/TEXT line from the device, as sent (escape before showing).
    Info {
        /// The line.
        text: String,
    },
    /// The device answered OKAY.
    Okay {
        /// The command.
        command: String,
        /// The OKAY's text, as sent (a getvar's value).
        text: String,
    },
    /// The device answered FAIL.
    Failed {
        /// The command.
        command: String,
        /// The device's reason, as sent.
        reason: String,
    },
    /// `format` built an empty filesystem image on this computer for a partition.
    FilesystemBuilt {
        /// The partition it is for.
        partition: String,
        /// The filesystem (`ext4`, `f2fs`), as the device reports the partition's type.
        filesystem: String,
        /// The partition's size in bytes, as the device reports it.
        size: u64,
        /// The command that built it.
        command: String,
        /// SHA-256 of the sparse image sent, checked again on its way to the device.
        sha256: String,
    },
    /// A package image passed its signature check on its way to the device.
    ImageVerified {
        /// The image's partition name in the package.
        image: String,
        /// SHA-256 of the bytes sent, equal to the signed one.
        sha256: String,
    },
}

/// Why a verb did not run to the device's answer.
#[derive(Debug, thiserror::Error)]
pub enum VerbError {
    /// The device or the link failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// `--slot` cannot be applied to this device or partition.
    #[error(transparent)]
    Slot(#[from] SlotError),
    /// The package failed verification; nothing was sent.
    #[error("package rejected: {0}")]
    Package(#[from] PackageError),
    /// flashline will not do this; nothing was sent.
    #[error("{0}")]
    Refused(String),
}

/// The user's explicit consent to wiping the phone's user data (`--yes-wipe-user-data`, or
/// a confirmation typed at the prompt); the only way to lock or unlock a bootloader.
#[derive(Debug, Clone, Copy)]
pub struct WipeConfirmed(());

impl WipeConfirmed {
    /// Made by a front end once the user confirmed, never by flashline on its own.
    pub fn by_user() -> Self {
        WipeConfirmed(())
    }
}

/// The lock states `flashing` switches between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockChange {
    /// `flashing lock`.
    Lock,
    /// `flashing unlock`.
    Unlock,
}

impl LockChange {
    /// The command that makes the change.
    pub fn command(self) -> &'static str {
        match self {
            LockChange::Lock => "flashing lock",
            LockChange::Unlock => "flashing unlock",
        }
    }
}

/// Whether `oem` arguments lock or unlock the bootloader (the spelling older bootloaders
/// use for `flashing lock|unlock`, with the same wipe).
pub fn oem_changes_lock(args: &[String]) -> bool {
    args.first().is_some_and(|first| {
        let first = first.to_ascii_lowercase();
        first.starts_with("lock") || first.starts_with("unlock")
    })
}

/// One image of a verified package, to boot from RAM.
pub struct BootImage {
    package: VerifiedPackage,
    index: usize,
}

impl BootImage {
    /// Opens and verifies the package and finds its image `image` (a partition name):
    /// nothing touches a device before this succeeds.
    pub fn open(package: &Path, trust: &TrustStore, image: &str) -> Result<Self, VerbError> {
        let package = Package::open(package)?.verify(trust)?;
        let images = &package.manifest().images;
        let index = images
            .iter()
            .position(|i| i.partition == image)
            .ok_or_else(|| {
                let names: Vec<&str> = images.iter().map(|i| i.partition.as_str()).collect();
                VerbError::Refused(format!(
                    "the package has no image {image:?}; it has: {}",
                    names.join(", ")
                ))
            })?;
        Ok(BootImage { package, index })
    }
}

/// A connection to one device in fastboot mode.
pub struct Session {
    driver: Box<dyn Driver>,
}

impl Session {
    /// Opens the device at `address`; `timeout` replaces the protocol's silence timeout.
    pub fn open(address: &str, timeout: Option<Duration>) -> Result<Self, VerbError> {
        let mut driver = discovery::open(address, &Quirks::builtin(), false, false)?;
        if driver.fastboot_verbs().is_none() {
            return Err(VerbError::Refused(format!(
                "{address} is not a device in fastboot mode"
            )));
        }
        if let Some(silence) = timeout {
            driver.set_timeout(silence);
        }
        Ok(Session { driver })
    }

    /// `getvar:<name>`. Returns whether the device answered OKAY.
    pub fn getvar(
        &mut self,
        name: &str,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        self.send(&format!("getvar:{name}"), emit)
    }

    /// `oem <args>`. Arguments that lock or unlock the bootloader need `wipe`.
    pub fn oem(
        &mut self,
        args: &[String],
        wipe: Option<WipeConfirmed>,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        let command = format!("oem {}", args.join(" "));
        if oem_changes_lock(args) {
            if wipe.is_none() {
                return Err(VerbError::Refused(format!(
                    "`{command}` locks or unlocks the bootloader, which wipes all user data on \
                     the phone; confirm with --yes-wipe-user-data. Nothing was sent."
                )));
            }
            return self.exchange(&command, emit, |v, c| v.send_waiting(c, CONFIRM_ON_DEVICE));
        }
        self.send(&command, emit)
    }

    /// `erase:<partition>` for every partition `--slot` names.
    pub fn erase(
        &mut self,
        partition: &str,
        slot: Option<SlotChoice>,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        for target in self.targets(partition, slot)? {
            let size = self.driver.partition_size(&target)?;
            let command = format!("erase:{target}");
            if !self.exchange(&command, emit, |v, _| v.erase_partition(&target, size))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `format` of every partition `--slot` names: an empty filesystem of the type and
    /// size the device reports, built here and flashed (see the module documentation).
    /// Refused, with nothing sent but variable reads, for a partition of another type or
    /// when the tool that builds its filesystem is missing.
    pub fn format(
        &mut self,
        partition: &str,
        slot: Option<SlotChoice>,
        _wipe: WipeConfirmed,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        for target in self.targets(partition, slot)? {
            let image = self.empty_filesystem(partition, &target)?;
            emit(VerbEvent::FilesystemBuilt {
                partition: target.clone(),
                filesystem: image.filesystem.name().into(),
                size: image.size,
                command: image.command.clone(),
                sha256: hex::encode(image.sha256),
            });
            let command = format!("flash:{target}");
            emit(VerbEvent::Sent {
                command: command.clone(),
            });
            let to = Target::Partition {
                name: target.clone(),
            };
            self.driver.prepare(&to, &image)?;
            self.driver.write_image(&to, &image, &mut |_| {})?;
            emit(VerbEvent::Okay {
                command,
                text: String::new(),
            });
        }
        Ok(true)
    }

    /// Builds the empty filesystem `target` takes, from what the device reports of it.
    fn empty_filesystem(
        &mut self,
        partition: &str,
        target: &str,
    ) -> Result<filesystem::EmptyImage, VerbError> {
        let refuse = |why: String| {
            VerbError::Refused(format!(
                "format refused: {why}. Nothing was sent. To clear it, use `flashline fastboot \
                 erase {partition}` (Android creates a fresh filesystem on userdata and cache \
                 at the next boot), or flash a signed package that carries a filesystem image."
            ))
        };
        let kind = self
            .driver
            .variable(&format!("partition-type:{target}"))?
            .map(|t| crate::device::clean(&t));
        let Some(fs) = kind.as_deref().and_then(Filesystem::from_partition_type) else {
            return Err(refuse(format!(
                "the device reports partition-type {} for {target}; flashline builds ext4 and \
                 f2fs only, and a raw partition has no filesystem to create (Google's fastboot \
                 refuses it too)",
                kind.as_deref().unwrap_or("(none)")
            )));
        };
        let size = self
            .driver
            .partition_size(target)?
            .ok_or_else(|| refuse(format!("the device reports no partition-size for {target}")))?;
        let mut block = |name: &str| -> Result<u64, VerbError> {
            let value = self.driver.variable(name)?;
            Ok(FlashGeometry::size(value.and_then(|v| {
                parse_block_size(&crate::device::clean(&v), NumberStyle::Decimal)
            })))
        };
        let geometry = FlashGeometry {
            erase_block: block("erase-block-size")?,
            logical_block: block("logical-block-size")?,
        };
        filesystem::build(fs, size, geometry).map_err(|e| refuse(e.to_string()))
    }

    /// `flashing lock|unlock`: wipes the phone's user data; the phone may ask on its screen.
    pub fn flashing(
        &mut self,
        change: LockChange,
        _wipe: WipeConfirmed,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        self.exchange(change.command(), emit, |v, c| {
            v.send_waiting(c, CONFIRM_ON_DEVICE)
        })
    }

    /// Boots image `index` of a verified package from RAM; `boot` is sent only if the bytes
    /// that went out were exactly the signed ones ([`BootImage::open`] finds the image).
    pub fn boot(
        &mut self,
        image: &BootImage,
        emit: &mut dyn FnMut(VerbEvent),
    ) -> Result<bool, VerbError> {
        // The package's signer and products are checked as for a flash: a kernel made for
        // another product, or signed with the public demo key, is not run on this device.
        let device = self.driver.identify()?;
        let preflight = Preflight::run(&image.package, &device, &[], None, &Overrides::default());
        if let Some(refusal) = preflight
            .checks
            .iter()
            .find(|c| c.status == Status::Refuse && matches!(c.name.as_str(), "signer" | "product"))
        {
            return Err(VerbError::Refused(format!(
                "boot refused before anything was sent: {}",
                refusal.message
            )));
        }
        let entry = &image.package.manifest().images[image.index];
        let source = PackageImage::new(&image.package, image.index);
        emit(VerbEvent::Sent {
            command: format!("download:{:08x}", entry.size),
        });
        let reply = match self.verbs()?.boot_image(&source, &mut |_| {}) {
            Ok(reply) => reply,
            Err(DeviceError::ImageChanged(why)) => {
                return Err(VerbError::Refused(format!(
                    "the image sent was not the signed image ({why}); `boot` was not sent"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        emit(VerbEvent::ImageVerified {
            image: entry.partition.clone(),
            sha256: entry.sha256.to_string(),
        });
        emit(VerbEvent::Sent {
            command: "boot".into(),
        });
        Ok(Self::answered("boot", reply, emit))
    }

    /// The partitions `--slot` names for `partition`, from what the device reports.
    fn targets(
        &mut self,
        partition: &str,
        slot: Option<SlotChoice>,
    ) -> Result<Vec<String>, VerbError> {
        let mut facts = SlotFacts::default();
        let mut var = |name: &str| -> Result<Option<String>, VerbError> {
            Ok(self.driver.variable(name)?.map(|v| v.trim().to_string()))
        };
        facts.count = var("slot-count")?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if facts.count >= 2 {
            facts.current =
                var("current-slot")?.and_then(|v| v.trim_start_matches('_').chars().next());
            facts.has_slot = match var(&format!("has-slot:{partition}"))?.as_deref() {
                Some("yes") => Some(true),
                Some("no") => Some(false),
                _ => None,
            };
        }
        Ok(resolve(partition, slot, &facts)?)
    }

    fn verbs(
        &mut self,
    ) -> Result<&mut dyn crate::device::fastboot::verbs::FastbootVerbs, VerbError> {
        self.driver
            .fastboot_verbs()
            .ok_or_else(|| VerbError::Refused("the device is not in fastboot mode".into()))
    }

    /// Sends a command without a data phase.
    fn send(&mut self, command: &str, emit: &mut dyn FnMut(VerbEvent)) -> Result<bool, VerbError> {
        self.exchange(command, emit, |v, c| v.send(c))
    }

    /// Runs one exchange and emits what was sent and what the device said.
    fn exchange(
        &mut self,
        command: &str,
        emit: &mut dyn FnMut(VerbEvent),
        run: impl FnOnce(
            &mut dyn crate::device::fastboot::verbs::FastbootVerbs,
            &str,
        ) -> Result<Reply, DeviceError>,
    ) -> Result<bool, VerbError> {
        emit(VerbEvent::Sent {
            command: command.to_string(),
        });
        let reply = run(self.verbs()?, command)?;
        Ok(Self::answered(command, reply, emit))
    }

    /// Emits the device's lines and answer; whether it was OKAY.
    fn answered(command: &str, reply: Reply, emit: &mut dyn FnMut(VerbEvent)) -> bool {
        for text in reply.lines {
            emit(VerbEvent::Info { text });
        }
        match reply.answer {
            Answer::Okay(text) => {
                emit(VerbEvent::Okay {
                    command: command.to_string(),
                    text,
                });
                true
            }
            Answer::Failed(reason) => {
                emit(VerbEvent::Failed {
                    command: command.to_string(),
                    reason,
                });
                false
            }
        }
    }
}
