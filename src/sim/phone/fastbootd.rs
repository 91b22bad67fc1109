//! The phone's userspace fastboot (fastbootd): what a phone with dynamic partitions
//! answers after `reboot-fastboot`, until `reboot-bootloader` or `reboot`.
//!
//! Behaviour and answer texts follow AOSP's fastbootd (system/core, fastboot/device:
//! commands.cpp, variables.cpp, flashing.cpp; github.com/aosp-mirror/platform_system_core),
//! provenance `public reports`:
//!
//! * Variables: `is-userspace` is `yes`; `is-logical:<p>` is `yes`/`no`, or FAIL
//!   `Partition not found`; `super-partition-name` is `super` (`system_<slot>` on retrofit
//!   phones); `partition-size` of a logical partition is its extents' sum, `0x…` in upper
//!   case; `partition-type` is `raw`; `has-slot` never fails; `snapshot-update-status`
//!   is `none`, `snapshotted` or `merging`; `max-download-size` is fastbootd's own; unknown
//!   names FAIL `Unknown variable`.
//! * `update-super:<name>[:wipe]` takes the downloaded `super_empty.img`. With `wipe`, or
//!   when the device's metadata is unreadable, it becomes the table as it is; otherwise
//!   the new table keeps the old partitions that are neither the current slot's, nor (on
//!   Virtual A/B) the other slot's, nor in the `cow` group, nor `scratch`, with their
//!   extents. Bad magic or checksums: FAIL, nothing written.
//! * `resize-logical-partition`, `create-logical-partition`, `delete-logical-partition`
//!   edit the table of the super that holds the partition (deleting one that does not
//!   exist succeeds). Resizing or flashing clears the partition's `UPDATED` attribute, as
//!   fastbootd does to cancel its snapshot.
//! * `flash:<logical>` writes raw or sparse data into the partition's extents; more data
//!   than the partition holds fails with strerror(EOVERFLOW), an unknown name with
//!   strerror(ENOENT).
//! * `snapshot-update` (no argument) reports the state; `:cancel` ends a snapshotted or
//!   merging update, `:merge` finishes a merging one. Either way the `-cow` partitions are
//!   removed from super, as the device's snapshot manager does when an update ends.
//! * While an update is snapshotted or merging, userdata, metadata and misc may not be
//!   flashed or erased, and (merging) the slot may not change.
//! * Locked: flash, erase and the logical-partition commands fail.

use std::io::{self, BufReader};

use crate::protocol::fastboot::{parse_number, Command, Response};
use crate::protocol::lp::{self, Container, SECTOR_SIZE};
use crate::protocol::sparse;

use super::bootloader::{is_unslotted, Bootloader, Flow, Mode, SLOTS};
use super::dynamic::{self, ExtentWriter, SnapshotStatus, Table, COW_GROUP};
use super::link::Link;
use super::storage::{Meter, Partition};

/// strerror(EOVERFLOW): fastbootd's answer to more data than the partition holds.
const TOO_LARGE: &str = "Value too large for defined data type";
/// strerror(ENOENT): fastbootd's answer to flashing a partition that does not exist.
const NO_SUCH_PARTITION: &str = "No such file or directory";
/// Partitions fastbootd protects while a snapshot update is in progress.
const PROTECTED_DURING_MERGE: [&str; 3] = ["userdata", "metadata", "misc"];
/// The partition a debuggable build's overlayfs lives in; `update-super` drops it.
const SCRATCH: &str = "scratch";

impl Bootloader {
    /// Executes one command as fastbootd.
    pub(super) fn execute_fastbootd(
        &mut self,
        command: Command,
        link: &mut Link,
    ) -> io::Result<Flow> {
        let response = match command {
            Command::GetVar(name) if name == "all" => {
                for line in self.fastbootd_listing() {
                    link.send(&Response::Info(line))?;
                }
                Response::Okay(String::new())
            }
            Command::GetVar(name) => match self.fastbootd_var(&name) {
                Ok(value) => Response::Okay(value),
                Err(reason) => Response::Fail(reason),
            },
            Command::Download(len) => return self.download(len, link),
            Command::Flash(_) if self.cfg.locked => {
                Response::Fail("Flashing is not allowed on locked devices".into())
            }
            Command::Erase(_) if self.cfg.locked => {
                Response::Fail("Erase is not allowed on locked devices".into())
            }
            Command::Flash(name) if self.protected_during_merge(&name) => Response::Fail(format!(
                "Cannot flash {name} while a snapshot update is in progress"
            )),
            Command::Erase(name) if self.protected_during_merge(&name) => Response::Fail(format!(
                "Cannot erase {name} while a snapshot update is in progress"
            )),
            Command::Flash(name) => match self.flash_logical_or_physical(&name, link)? {
                Some(response) => response,
                None => return Ok(Flow::Close),
            },
            Command::Erase(name) => self.erase_fastbootd(&name),
            Command::SetActive(_) if self.snapshot == SnapshotStatus::Merging => {
                Response::Fail("Cannot change slots while a snapshot update is in progress".into())
            }
            Command::SetActive(slot) => self.set_active(&slot),
            Command::Reboot => return self.leave(link, "Rebooting", Mode::Bootloader),
            Command::RebootBootloader => {
                return self.leave(link, "Rebooting bootloader", Mode::Bootloader)
            }
            Command::Continue => Response::Fail("Unrecognized command continue".into()),
            Command::Other(text) => {
                let args: Vec<&str> = text.split(':').collect();
                match args[0] {
                    "reboot-fastboot" => {
                        return self.leave(link, "Rebooting fastboot", Mode::Fastbootd)
                    }
                    "update-super" => self.update_super(&args),
                    "create-logical-partition" => self.edit_table(&args, Edit::Create),
                    "resize-logical-partition" => self.edit_table(&args, Edit::Resize),
                    "delete-logical-partition" => self.edit_table(&args, Edit::Delete),
                    "snapshot-update" => self.snapshot_update(&args, link)?,
                    verb => Response::Fail(format!("Unrecognized command {verb}")),
                }
            }
        };
        link.send(&response)?;
        Ok(Flow::Next)
    }

    /// Answers, then reboots into `mode`.
    fn leave(&mut self, link: &mut Link, message: &str, mode: Mode) -> io::Result<Flow> {
        link.send(&Response::Okay(message.into()))?;
        self.enter(mode);
        Ok(Flow::Close)
    }

    /// The physical partition holding the metadata of the current slot: `super`, or on a
    /// retrofit phone `system_<current slot>`.
    pub(super) fn super_name(&self) -> String {
        self.super_for_suffix(self.current_suffix())
    }

    fn super_for_suffix(&self, suffix: &str) -> String {
        match &self.cfg.dynamic {
            Some(d) if d.retrofit => format!("system{suffix}"),
            _ => "super".to_string(),
        }
    }

    /// `_a`/`_b` for the active slot; empty without slots.
    fn current_suffix(&self) -> &'static str {
        match &self.slots {
            Some(slots) if slots.active == 1 => "_b",
            Some(_) => "_a",
            None => "",
        }
    }

    /// The index of the metadata slot of the current slot.
    fn metadata_slot(&self) -> u32 {
        self.slots.as_ref().map_or(0, |s| s.active as u32)
    }

    /// The physical partition whose metadata holds `name`: on a retrofit phone the super
    /// of the slot `name` is suffixed with (the current one without a suffix).
    fn super_holding(&self, name: &str) -> Option<Partition> {
        let suffix = ["_a", "_b"]
            .into_iter()
            .find(|s| name.ends_with(s))
            .unwrap_or(self.current_suffix());
        self.storage.get(&self.super_for_suffix(suffix)).cloned()
    }

    /// Reads the table of the super holding `name`.
    fn table_for(&self, name: &str) -> Option<(Partition, Table)> {
        let part = self.super_holding(name)?;
        let table = self.load_table(&part)?;
        Some((part, table))
    }

    /// Reads the current slot's table from super partition `part`.
    fn load_table(&self, part: &Partition) -> Option<Table> {
        let mut file = self.storage.open_rw(part).ok()?;
        dynamic::load(&mut file, self.metadata_slot()).ok()
    }

    fn write_table(&self, part: &Partition, table: &Table) -> Result<(), String> {
        let mut file = self.storage.open_rw(part).map_err(|e| e.to_string())?;
        dynamic::store(&mut file, table).map_err(|e| e.to_string())
    }

    fn protected_during_merge(&self, name: &str) -> bool {
        self.snapshot != SnapshotStatus::None && PROTECTED_DURING_MERGE.contains(&name)
    }

    /// `getvar` as fastbootd answers it.
    fn fastbootd_var(&self, name: &str) -> Result<String, String> {
        let (key, arg) = match name.split_once(':') {
            Some((key, arg)) => (key, Some(arg)),
            None => (name, None),
        };
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        let logical = |p: &str| self.table_for(p).and_then(|(_, table)| table.size_of(p));
        Ok(match (key, arg) {
            ("is-userspace", None) => yes_no(true),
            ("max-download-size", None) => format!("0x{:X}", self.max_download_size()),
            ("super-partition-name", None) => self.super_name(),
            ("snapshot-update-status", None) => self.snapshot.to_string(),
            ("is-logical", Some(p)) => match (logical(p), self.storage.get(p)) {
                (Some(_), _) => yes_no(true),
                (None, Some(_)) => yes_no(false),
                (None, None) => return Err("Partition not found".into()),
            },
            ("partition-size", Some(p)) => match (logical(p), self.storage.get(p)) {
                (Some(size), _) => format!("0x{size:X}"),
                (None, Some(part)) => format!("0x{:X}", part.size),
                (None, None) => return Err("Could not open partition".into()),
            },
            ("partition-type", Some(p)) => {
                if logical(p).is_none() && self.storage.get(p).is_none() {
                    return Err("Invalid partition".into());
                }
                self.cfg.partition_type(p)
            }
            ("has-slot", Some(p)) => {
                let suffix = self.current_suffix();
                let name = format!("{p}{suffix}");
                yes_no(
                    !suffix.is_empty()
                        && !is_unslotted(p)
                        && (self.storage.get(&name).is_some() || logical(&name).is_some()),
                )
            }
            _ => self
                .own_var(name)
                .ok_or_else(|| "Unknown variable".to_string())?,
        })
    }

    /// `getvar all`: `name:value` lines for every variable fastbootd knows.
    fn fastbootd_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = [
            "version",
            "version-bootloader",
            "product",
            "serialno",
            "secure",
            "unlocked",
            "is-userspace",
            "max-download-size",
            "super-partition-name",
            "snapshot-update-status",
            "battery-soc-ok",
            "slot-count",
            "current-slot",
        ]
        .map(String::from)
        .to_vec();
        if self.slots.is_some() {
            for slot in SLOTS {
                names.push(format!("slot-successful:{slot}"));
                names.push(format!("slot-unbootable:{slot}"));
            }
        }
        let mut partitions: Vec<String> = self
            .storage
            .partitions()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let mut supers: Vec<String> = vec![self.super_name()];
        if let Some(d) = &self.cfg.dynamic {
            if d.retrofit {
                supers = ["_a", "_b"].map(|s| self.super_for_suffix(s)).to_vec();
            }
        }
        for name in &supers {
            if let Some(table) = self.storage.get(name).and_then(|p| self.load_table(p)) {
                partitions.extend(table.names().map(String::from));
            }
        }
        // On a retrofit phone system_a is both the physical super and a logical partition.
        let mut seen = std::collections::HashSet::new();
        partitions.retain(|p| seen.insert(p.clone()));
        for part in &partitions {
            for var in ["partition-size", "partition-type", "is-logical"] {
                names.push(format!("{var}:{part}"));
            }
        }
        names
            .into_iter()
            .filter_map(|name| {
                let value = self.fastbootd_var(&name).ok()?;
                Some(format!("{name}:{value}"))
            })
            .collect()
    }

    /// `flash:<name>`: into a logical partition's extents, else into the physical one.
    /// `None` when the power was cut during the write (no answer).
    fn flash_logical_or_physical(
        &mut self,
        name: &str,
        link: &mut Link,
    ) -> io::Result<Option<Response>> {
        let Some((part, mut table)) = self.table_for(name).filter(|(_, t)| t.contains(name)) else {
            if self.storage.get(name).is_none() {
                return Ok(Some(Response::Fail(NO_SUCH_PARTITION.into())));
            }
            return Ok(self.flash_physical(name, link)?.map(|r| match r {
                Response::Okay(_) => Response::Okay("Flashing succeeded".into()),
                other => other,
            }));
        };
        let Some(len) = self.download else {
            return Ok(Some(Response::Fail("Invalid argument".into())));
        };
        let size = table.size_of(name).unwrap_or(0);
        let sparse = self.download_is_sparse();
        let needed = if sparse {
            let file = match self.open_download() {
                Ok(file) => file,
                Err(reason) => return Ok(Some(Response::Fail(reason))),
            };
            match sparse::expand(BufReader::new(file), &mut sparse::Validate) {
                Ok(header) => header.expanded_len(),
                Err(_) => return Ok(Some(Response::Fail("Invalid argument".into()))),
            }
        } else {
            len
        };
        if needed > size {
            return Ok(Some(Response::Fail(TOO_LARGE.into())));
        }
        // Flashing a logical partition cancels its snapshot, as fastbootd does.
        table.clear_updated(name);
        if let Err(reason) = self.write_table(&part, &table) {
            return Ok(Some(Response::Fail(reason)));
        }
        let placement = table.placement(name).unwrap_or_default();
        let (file, source) = match (self.storage.open_rw(&part), self.open_download()) {
            (Ok(file), Ok(source)) => (file, BufReader::new(source)),
            (Err(e), _) => return Ok(Some(Response::Fail(e.to_string()))),
            (_, Err(reason)) => return Ok(Some(Response::Fail(reason))),
        };
        let mut meter = Meter::new(self.faults.write_budget());
        let mut writer = ExtentWriter::new(file, placement, &mut meter);
        let result = if sparse {
            sparse::expand(source, &mut writer)
                .map(drop)
                .map_err(|e| e.to_string())
        } else {
            writer.write_raw(source, len).map_err(|e| e.to_string())
        };
        drop(writer);
        if !self.after_write(meter.written()) {
            return Ok(None);
        }
        Ok(Some(match result {
            Ok(()) => Response::Okay("Flashing succeeded".into()),
            Err(e) => Response::Fail(e),
        }))
    }

    /// `erase:<name>`: zeros over a logical partition's extents, or the physical one.
    fn erase_fastbootd(&mut self, name: &str) -> Response {
        let done =
            if let Some((part, table)) = self.table_for(name).filter(|(_, t)| t.contains(name)) {
                let placement = table.placement(name).unwrap_or_default();
                let mut meter = Meter::new(None);
                self.storage
                    .open_rw(&part)
                    .and_then(|file| ExtentWriter::new(file, placement, &mut meter).zero())
            } else if let Some(part) = self.storage.get(name) {
                self.storage.erase(part)
            } else {
                return Response::Fail("Partition doesn't exist".into());
            };
        match done {
            Ok(()) => Response::Okay("Erasing succeeded".into()),
            Err(_) => Response::Fail("Erasing failed".into()),
        }
    }

    /// `create-`, `resize-` and `delete-logical-partition`.
    fn edit_table(&mut self, args: &[&str], edit: Edit) -> Response {
        let wanted = if edit == Edit::Delete { 2 } else { 3 };
        if args.len() < wanted || args[1].is_empty() {
            return Response::Fail("Invalid partition name and size".into());
        }
        if self.cfg.locked {
            return Response::Fail("Command not available on locked devices".into());
        }
        let name = args[1];
        let size = if edit == Edit::Delete {
            0
        } else {
            match parse_number(args[2]).filter(|_| !args[2].trim().is_empty()) {
                Some(size) => size,
                None => return Response::Fail("Invalid partition size".into()),
            }
        };
        let Some((part, mut table)) = self.table_for(name) else {
            return Response::Fail("Could not open super partition".into());
        };
        let outcome = match edit {
            Edit::Create => table.create(name, size).map(|()| "Partition created"),
            Edit::Resize => {
                table.clear_updated(name);
                table.resize(name, size).map(|()| "Partition resized")
            }
            Edit::Delete => {
                table.remove(name);
                Ok("Partition deleted")
            }
        };
        match outcome {
            Err(refusal) => Response::Fail(refusal.message().into()),
            Ok(done) => match self.write_table(&part, &table) {
                Ok(()) => Response::Okay(done.into()),
                Err(_) => Response::Fail("Failed to write partition table".into()),
            },
        }
    }

    /// `update-super:<name>[:wipe]` with the downloaded `super_empty.img`.
    fn update_super(&mut self, args: &[&str]) -> Response {
        let Some(&name) = args.get(1).filter(|n| !n.is_empty()) else {
            return Response::Fail("Invalid arguments".into());
        };
        if self.cfg.locked {
            return Response::Fail("Command not available on locked devices".into());
        }
        let wipe = args.get(2) == Some(&"wipe");
        if self.download.is_none() {
            return Response::Fail("No data available".into());
        }
        let new =
            self.open_download()
                .ok()
                .and_then(|mut file| match lp::read_metadata(&mut file, 0) {
                    Ok((Container::EmptyImage, metadata)) => Table::from_metadata(&metadata).ok(),
                    _ => None,
                });
        let Some(mut new) = new else {
            return Response::Fail("Data is not a valid logical partition metadata image".into());
        };
        let is_super = ["_a", "_b", ""]
            .iter()
            .any(|s| self.super_for_suffix(s) == name);
        let Some(part) = self.storage.get(name).filter(|_| is_super).cloned() else {
            return Response::Fail(format!(
                "Cannot find {name}, build may be missing broken or missing boot_devices"
            ));
        };
        let old = self.load_table(&part);
        let old = match old {
            Some(old) if !wipe => old,
            _ => {
                if dynamic::check_fits(&new, part.size).is_err()
                    || self.write_table(&part, &new).is_err()
                {
                    return Response::Fail("Unable to flash new partition table".into());
                }
                return Response::Okay("Successfully flashed partition table".into());
            }
        };
        let suffix = self.current_suffix();
        let other = match suffix {
            "_a" => "_b",
            "_b" => "_a",
            _ => "",
        };
        let virtual_ab = old.is_virtual_ab();
        let keep: Vec<String> = old
            .names()
            .filter(|p| {
                let slot_suffix = ["_a", "_b"].into_iter().find(|s| p.ends_with(s));
                let dropped_slot = !suffix.is_empty()
                    && (slot_suffix == Some(suffix) || (slot_suffix == Some(other) && virtual_ab));
                !dropped_slot && old.group_of(p) != Some(COW_GROUP) && *p != SCRATCH
            })
            .map(String::from)
            .collect();
        if !new.import(&old, &keep) {
            return Response::Fail(
                "Old partitions are not compatible with the new super layout; wipe needed".into(),
            );
        }
        if old.accepts(&new, part.size).is_err() || self.write_table(&part, &new).is_err() {
            return Response::Fail("Unable to write new partition table".into());
        }
        Response::Okay("Successfully updated partition table".into())
    }

    /// `snapshot-update[:cancel|:merge]`.
    fn snapshot_update(&mut self, args: &[&str], link: &mut Link) -> io::Result<Response> {
        let Some(&action) = args.get(1).filter(|a| !a.is_empty()) else {
            link.send(&Response::Info(self.snapshot.to_string()))?;
            return Ok(Response::Okay(String::new()));
        };
        if args.len() != 2 {
            return Ok(Response::Fail("Invalid arguments".into()));
        }
        match action {
            "cancel" => {}
            "merge" if self.snapshot != SnapshotStatus::Merging => {
                return Ok(Response::Fail("No snapshot merge is in progress".into()))
            }
            "merge" => {}
            _ => {
                return Ok(Response::Fail(
                    "Invalid parameter to snapshot-update".into(),
                ))
            }
        }
        if self.snapshot != SnapshotStatus::None {
            self.snapshot = SnapshotStatus::None;
            self.end_update();
        }
        Ok(Response::Okay("Success".into()))
    }

    /// Removes the copy-on-write partitions and the `UPDATED` marks from every super: what
    /// the device's snapshot manager does once an update is cancelled or merged.
    fn end_update(&mut self) {
        for suffix in ["_a", "_b", ""] {
            let Some(part) = self.storage.get(&self.super_for_suffix(suffix)).cloned() else {
                continue;
            };
            let Ok(mut file) = self.storage.open_rw(&part) else {
                continue;
            };
            let Ok(mut table) = dynamic::load(&mut file, self.metadata_slot()) else {
                continue;
            };
            table.remove_group_members(COW_GROUP);
            let names: Vec<String> = table.names().map(String::from).collect();
            for name in names {
                table.clear_updated(&name);
            }
            if let Err(e) = dynamic::store(&mut file, &table) {
                tracing::warn!("phone sim: cannot end the update on {}: {e}", part.name);
            }
        }
    }
}

/// The three table edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    Create,
    Resize,
    Delete,
}

/// Lays out the super partitions of a dynamic phone whose files hold no metadata yet;
/// metadata already there (from an earlier run) is kept, so a phone keeps its partitions
/// across restarts.
pub(super) fn prepare_supers(
    cfg: &super::PhoneConfig,
    storage: &super::storage::Storage,
) -> Result<(), super::ConfigError> {
    let Some(d) = &cfg.dynamic else {
        return Ok(());
    };
    let bad = |e: lp::LpError| super::ConfigError::BadSuper(e.to_string());
    let devices: Vec<(String, Vec<&str>, Option<&str>)> = match (cfg.slots, d.retrofit) {
        (true, true) => vec![
            ("system_a".into(), vec!["_a"], None),
            ("system_b".into(), vec!["_b"], None),
        ],
        (true, false) => vec![("super".into(), vec!["_a", "_b"], Some("_b"))],
        (false, _) => vec![("super".into(), vec![""], None)],
    };
    for (device, slots, other) in devices {
        let Some(part) = storage.get(&device) else {
            continue;
        };
        let io_err = |source: io::Error| super::ConfigError::Io {
            path: storage.image_path(part),
            source,
        };
        let mut file = storage.open_rw(part).map_err(io_err)?;
        if dynamic::load(&mut file, 0).is_ok() {
            continue;
        }
        let metadata = d.initial_metadata(&device, &slots, other).map_err(bad)?;
        lp::write_metadata_region(&metadata, &mut file).map_err(bad)?;
        tracing::debug!(
            super_device = %device,
            first_data_byte = metadata.block_devices[0].first_logical_sector * SECTOR_SIZE,
            "phone sim: laid out super"
        );
    }
    Ok(())
}
