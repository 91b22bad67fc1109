//! Flashing a phone with dynamic partitions in Google's order: firmware that restarts the
//! bootloader, the boot-critical physical partitions, then fastbootd for the logical
//! partitions in `super` — with every step journaled, so that an interruption anywhere
//! resumes on the next run.
//!
//! The job calls [`Phases`] at a few points and otherwise runs as for any phone:
//! - [`Phases::inspect`] after identifying the device: for a package with logical
//!   partitions, a visit to fastbootd that writes nothing reads what decides whether they
//!   fit `super` (its name and size, the logical partitions there, a pending snapshot
//!   update); the job then starts from the bootloader, whatever mode the phone was in;
//! - [`Phases::checks`] in preflight: no `super`, or no room in it, is refused before the
//!   first write (see [`super::dynamic`]);
//! - [`Phases::before`] ahead of each image, in the plan's order: the `reboot-bootloader`
//!   owed after a firmware image, and on the first logical image the way into fastbootd
//!   (slot, `reboot-fastboot`, `snapshot-update:cancel`, `update-super`, the retrofit
//!   deletions), then the resize of that image's partition;
//! - [`Phases::finish`] after the last image.
//!
//! **The slot.** flashline writes the slot that is not running and switches only at the
//! end, so that an interrupted job leaves the phone booting its old slot. Google sets the
//! slot first, and for the logical partitions it must: fastbootd works as the active slot,
//! and `update-super` drops the partitions of the slot it runs as — run as the old slot,
//! it would drop the very system the phone still boots. So the switch moves to the last
//! moment it can: right before `reboot-fastboot`, after every physical image is written
//! and verified; until then the phone boots its old slot. On a phone with plain A/B
//! dynamic partitions `update-super` then keeps the old slot's logical partitions. On
//! Virtual A/B, super holds one copy of them and `update-super` drops both slots' (AOSP
//! `UpdateSuper`), so from `update-super` on the job must finish: the journal records the
//! switch and every step, and the next run after an interruption goes on writing the same
//! slot (not taking the now active one for the old) from the step that did not finish.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use super::dynamic::{self, LogicalWrite, SuperFacts};
use super::event::Event;
use super::job::{open_at, JobRequest, Stop};
use super::journal::{self, Resumable};
use super::plan::FlashPlan;
use super::preflight::{Check, Status};
use super::report::{Outcome, Report};
use super::super_image::{self, WholeSuper};
use crate::device::dynamic::{DynamicPartitions, SnapshotStatus};
use crate::device::{DeviceError, DeviceInfo, Driver, ImageSource, SendReader};
use crate::package::{ImageReader, VerifiedPackage};
use crate::protocol::lp::Metadata;

/// Where the commands and their order are known from.
const PROVENANCE: &str =
    "AOSP fastboot: fastboot.cpp flashall and source.android.com \"fastbootd\"";
/// How often a phone that is restarting is looked for.
const POLL: Duration = Duration::from_millis(100);

/// The phases of one job (nothing for a package without firmware restarts or logical
/// partitions).
pub(super) struct Phases<'p> {
    package: &'p VerifiedPackage,
    /// Present for a phased package.
    phased: Option<Phased>,
}

struct Phased {
    /// The package's `super_empty.img` metadata, if it carries one.
    layout: Option<Metadata>,
    /// What fastbootd reported, once read.
    facts: Option<SuperFacts>,
    /// The serial the phone is found again by after each restart.
    serial: Option<String>,
    /// The slot the phone ran when the job started.
    running_slot: Option<String>,
    /// The `reboot-bootloader` owed after the last firmware image (its journal step).
    pending_reboot: Option<String>,
    /// This run is in fastbootd with super prepared.
    in_fastbootd: bool,
    /// Once the first logical image comes: the whole super image the bootloader takes,
    /// or why fastbootd writes the logical partitions (see [`super_image`]).
    whole: Option<Result<WholeSuper, String>>,
}

impl<'p> Phases<'p> {
    /// Prepares the phases of `package` on the phone `driver` drives (see the module
    /// documentation); may restart the phone into fastbootd and back, and then replaces
    /// `driver` and `device`.
    pub(super) fn inspect(
        req: &JobRequest,
        package: &'p VerifiedPackage,
        driver: &mut Box<dyn Driver>,
        device: &mut DeviceInfo,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<Self, Stop> {
        let m = package.manifest();
        if !m.has_logical() && !m.images.iter().any(|i| i.reboot_bootloader) {
            return Ok(Phases {
                package,
                phased: None,
            });
        }
        let layout = package
            .super_empty_metadata()
            .map_err(|e| (Outcome::PackageRejected, format!("package rejected: {e}")))?;
        let mut phased = Phased {
            layout,
            facts: None,
            serial: device.serial.clone(),
            running_slot: None,
            pending_reboot: None,
            in_fastbootd: false,
            whole: None,
        };
        let device_err = |e: DeviceError| (Outcome::DeviceError, e.to_string());
        let userspace = match driver.dynamic() {
            Some(d) => d.is_userspace().map_err(device_err)?,
            None => false,
        };
        // A dry run restarts nothing: it reads the facts only if the phone is in fastbootd.
        let quiet = req.options.dry_run || req.options.check_only;
        let visit = m.has_logical() && !userspace && !quiet && phased.has_super(device);
        if visit {
            phased
                .switch(
                    req,
                    driver,
                    true,
                    "to read the layout of super (nothing is written)",
                    emit,
                )
                .map_err(untouched)?;
        }
        if m.has_logical() && (userspace || visit) {
            phased.facts = Some(read_facts(driver.as_mut()).map_err(device_err)?);
        }
        if (userspace || visit) && !quiet {
            phased
                .switch(req, driver, false, "where the job starts", emit)
                .map_err(untouched)?;
            *device = driver.identify().map_err(device_err)?;
        }
        // A phone switched by an interrupted run of this job still belongs to it.
        if let (Some(serial), Some(slots)) = (&device.serial, &mut device.slots) {
            if let Some(switch) = journal::switched_slot(&req.options.journal_dir, serial) {
                if slots.current == switch.to {
                    report.notes.push(format!(
                        "slot {} is active because an interrupted run of this job switched to it \
                         before fastbootd; this run goes on writing slot {}, and slot {} stays as it was",
                        switch.to, switch.to, switch.from
                    ));
                    slots.current = switch.from;
                }
            }
        }
        phased.running_slot = device.slots.as_ref().map(|s| s.current.clone());
        Ok(Phases {
            package,
            phased: Some(phased),
        })
    }

    /// The preflight checks of the logical partitions: the phone has `super`, and they fit
    /// in it. `targets` are the plan's targets, in package order.
    pub(super) fn checks(
        &self,
        device: &DeviceInfo,
        targets: &[(String, Option<u64>)],
    ) -> Vec<Check> {
        let Some(phased) = &self.phased else {
            return Vec::new();
        };
        let images = &self.package.manifest().images;
        if !images.iter().any(|i| i.logical) {
            return Vec::new();
        }
        let writes: Vec<LogicalWrite> = images
            .iter()
            .zip(targets)
            .filter(|(image, _)| image.logical)
            .map(|(image, (target, _))| LogicalWrite {
                target: target.clone(),
                bytes: image.expanded_size(),
            })
            .collect();
        let names: Vec<&str> = writes.iter().map(|w| w.target.as_str()).collect();
        let check = |status, actual: &str, message: String| Check {
            name: "super".into(),
            status,
            actual: actual.into(),
            required: "a super partition (dynamic partitions)".into(),
            message,
            relaxed_by: None,
        };
        match &phased.facts {
            Some(facts) => vec![dynamic::super_fit(
                facts,
                phased.layout.as_ref(),
                &writes,
                phased.layout.is_some(),
            )],
            None if !phased.has_super(device) => vec![check(
                Status::Refuse,
                "no super partition",
                format!(
                    "this package writes logical partitions ({}) into super, and the device reports \
                     no {}: it does not use dynamic partitions, so this package is not for it",
                    names.join(", "),
                    phased.super_devices(device).join(", ")
                ),
            )],
            None => vec![check(
                Status::Warn,
                "read in fastbootd",
                format!(
                    "whether {} fit super is read in fastbootd when the job runs, before anything is written",
                    names.join(", ")
                ),
            )],
        }
    }

    /// Runs what is owed before image `index` (see the module documentation); true when
    /// the image is already written, inside the whole super image.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn before(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        plan: &FlashPlan,
        index: usize,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<bool, Stop> {
        let Some(phased) = &mut self.phased else {
            return Ok(false);
        };
        phased.pay_reboot(req, driver, journal, report, emit)?;
        let image = &self.package.manifest().images[index];
        let target = &plan.writes[index].target;
        if image.reboot_bootloader {
            phased.pending_reboot = Some(format!("reboot-bootloader:{target}"));
        }
        if !image.logical {
            return Ok(false);
        }
        if !phased.in_fastbootd
            && phased.flash_whole(req, driver, plan, self.package, journal, report, emit)?
        {
            report.images[index].status = "written".into();
            report.images[index].sha256_sent = Some(report.images[index].sha256_signed.clone());
            return Ok(true);
        }
        if !phased.in_fastbootd {
            phased.enter_fastbootd(req, driver, plan, self.package, journal, report, emit)?;
        }
        if journal.was_verified(index) {
            return Ok(false);
        }
        let bytes = image.expanded_size();
        let step = format!("resize-logical-partition:{target}:{bytes}");
        let d = dynamic_of(driver.as_mut()).map_err(|e| fail(report, &step, e))?;
        let placed = match d.is_logical(target) {
            Ok(Some(true)) => d.resize_logical(target, bytes),
            Ok(_) => d.create_logical(target, bytes),
            Err(e) => Err(e),
        };
        placed.map_err(|e| fail(report, &step, e))?;
        journal.mark_step(&step);
        Ok(false)
    }

    /// Runs what is owed after the last image.
    pub(super) fn finish(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), Stop> {
        match &mut self.phased {
            Some(phased) => phased.pay_reboot(req, driver, journal, report, emit),
            None => Ok(()),
        }
    }
}

impl Phased {
    /// The physical partitions super lies on, named for the slot the job writes.
    fn super_devices(&self, device: &DeviceInfo) -> Vec<String> {
        match &self.layout {
            Some(layout) => {
                dynamic::super_devices(layout, super::plan::target_slot(device).as_deref())
            }
            None => vec!["super".into()],
        }
    }

    /// Whether the bootloader lists every partition super lies on.
    fn has_super(&self, device: &DeviceInfo) -> bool {
        self.super_devices(device).iter().all(|p| {
            device.partitions.contains_key(p) || device.partitions_size_unknown.contains(p)
        })
    }

    /// The `reboot-bootloader` owed after a firmware image, unless a run already did it.
    fn pay_reboot(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), Stop> {
        let Some(step) = self.pending_reboot.take() else {
            return Ok(());
        };
        if journal.step_done(&step) {
            return Ok(());
        }
        let after = step.trim_start_matches("reboot-bootloader:");
        self.switch(
            req,
            driver,
            false,
            &format!("after {after}, as Google's order wants"),
            emit,
        )
        .map_err(|(_, e)| fail(report, &step, e))?;
        journal.mark_step(&step);
        Ok(())
    }

    /// Sets the slot written active, once every physical image of it is verified:
    /// fastbootd works as the active slot, and a fresh super keeps only its partitions.
    fn activate(
        &self,
        driver: &mut Box<dyn Driver>,
        plan: &FlashPlan,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), Stop> {
        if let (Some(slot), Some(running)) = (&plan.activate_slot, &self.running_slot) {
            let step = format!("set_active:{slot}");
            emit(Event::SwitchStep {
                step: format!(
                    "{step}: fastbootd and a fresh super work as the active slot, so the slot is set first, \
                     once every physical image of slot {slot} is verified (slot {running} ran)"
                ),
                provenance: PROVENANCE.into(),
                reports_only: false,
            });
            driver
                .set_active_slot(slot)
                .map_err(|e| fail(report, &step, e))?;
            journal.mark_switched(running, slot);
            emit(Event::SlotSwitched { slot: slot.clone() });
        }
        Ok(())
    }

    /// Flashes the whole super image from the bootloader if the device allows it (see
    /// [`super_image`]); false when fastbootd must write the logical partitions.
    #[allow(clippy::too_many_arguments)]
    fn flash_whole(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        plan: &FlashPlan,
        package: &VerifiedPackage,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<bool, Stop> {
        if self.whole.is_none() {
            let decided = if req.options.optimized_super {
                let images = &package.manifest().images;
                let logical: Vec<(usize, String)> = (0..images.len())
                    .filter(|&i| images[i].logical)
                    .map(|i| (i, plan.writes[i].target.clone()))
                    .collect();
                let slot = plan
                    .activate_slot
                    .as_deref()
                    .or(self.running_slot.as_deref());
                super_image::decide(
                    package,
                    self.layout.as_ref(),
                    self.facts.as_ref(),
                    slot,
                    &logical,
                )
            } else {
                Err("super optimization is disabled (--disable-super-optimization)".into())
            };
            report.notes.push(match &decided {
                Ok(whole) => format!(
                    "optimized super: the whole {} image is built here and flashed by the \
                     bootloader in one pass",
                    whole.name
                ),
                Err(why) => format!("the logical partitions are written in fastbootd: {why}"),
            });
            self.whole = Some(decided);
        }
        let Some(Ok(whole)) = &self.whole else {
            return Ok(false);
        };
        if journal.step_done(super_image::STEP) {
            return Ok(true);
        }
        self.activate(driver, plan, journal, report, emit)?;
        let step = super_image::STEP;
        emit(Event::SwitchStep {
            step: format!(
                "flash:{}: {step}, laid out from super_empty.img with every logical image",
                whole.name
            ),
            provenance: "AOSP fastboot: fastboot.cpp FlashSuperLayoutTask (optimized super)".into(),
            reports_only: false,
        });
        let target = crate::device::Target::Partition {
            name: whole.name.clone(),
        };
        let source = super_image::Source { package, whole };
        driver
            .prepare(&target, &source)
            .and_then(|()| driver.write_image(&target, &source, &mut |_| {}))
            .map_err(|e| fail(report, step, e))?;
        journal.mark_step(step);
        Ok(true)
    }

    /// Switches the slot, enters fastbootd and prepares super for the logical partitions.
    #[allow(clippy::too_many_arguments)]
    fn enter_fastbootd(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        plan: &FlashPlan,
        package: &VerifiedPackage,
        journal: &mut Resumable,
        report: &mut Report,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), Stop> {
        self.activate(driver, plan, journal, report, emit)?;
        self.switch(
            req,
            driver,
            true,
            "to write the logical partitions in super",
            emit,
        )
        .map_err(|(step, e)| fail(report, &step, e))?;
        journal.mark_step("reboot-fastboot");

        let step = "snapshot-update:cancel";
        let d = dynamic_of(driver.as_mut()).map_err(|e| fail(report, step, e))?;
        if let SnapshotStatus::Pending(status) =
            d.snapshot_status().map_err(|e| fail(report, step, e))?
        {
            emit(Event::SwitchStep {
                step: format!(
                    "{step}: a Virtual A/B update is {status}; fastbootd cannot change the logical \
                     partitions until it is cancelled"
                ),
                provenance: PROVENANCE.into(),
                reports_only: false,
            });
            d.cancel_snapshot_update()
                .map_err(|e| fail(report, step, e))?;
        }
        let super_name = d
            .super_partition_name()
            .map_err(|e| fail(report, "getvar:super-partition-name", e))?
            .unwrap_or_else(|| "super".into());
        if self.layout.is_some() && !journal.step_done("update-super") {
            let step = format!("update-super:{super_name}");
            emit(Event::SwitchStep {
                step: format!("{step}: super laid out from the package's super_empty.img"),
                provenance: PROVENANCE.into(),
                reports_only: false,
            });
            d.update_super(&super_name, &SuperEmpty(package), false)
                .map_err(|e| fail(report, &step, e))?;
            journal.mark_step("update-super");
        }
        // Retrofit super lies on the slots' own system partitions: the other slot must be
        // flashed as physical partitions, so its logical ones go (as Google's flashall does).
        if super_name.starts_with("system_") {
            if let Some(other) = &self.running_slot {
                for image in package.manifest().images.iter().filter(|i| i.logical) {
                    let name = format!("{}_{other}", image.partition);
                    let step = format!("delete-logical-partition:{name}");
                    if d.is_logical(&name).map_err(|e| fail(report, &step, e))? == Some(true) {
                        emit(Event::SwitchStep {
                            step: format!(
                                "{step}: a retrofit device keeps the other slot physical"
                            ),
                            provenance: PROVENANCE.into(),
                            reports_only: false,
                        });
                        d.delete_logical(&name)
                            .map_err(|e| fail(report, &step, e))?;
                        journal.mark_step(&step);
                    }
                }
            }
        }
        self.in_fastbootd = true;
        Ok(())
    }

    /// Restarts the phone into fastbootd (`userspace`) or its bootloader and finds it
    /// again; on failure, the step and what went wrong.
    fn switch(
        &mut self,
        req: &JobRequest,
        driver: &mut Box<dyn Driver>,
        userspace: bool,
        why: &str,
        emit: &mut dyn FnMut(Event),
    ) -> Result<(), (String, DeviceError)> {
        let (step, mode) = if userspace {
            ("reboot-fastboot", "fastbootd")
        } else {
            ("reboot-bootloader", "the bootloader")
        };
        emit(Event::SwitchStep {
            step: format!("{step}: the phone restarts into {mode} {why}"),
            provenance: PROVENANCE.into(),
            reports_only: false,
        });
        let sent = match dynamic_of(driver.as_mut()) {
            Ok(d) if userspace => d.reboot_fastboot(),
            Ok(d) => d.reboot_bootloader(),
            Err(e) => Err(e),
        };
        sent.map_err(|e| (step.to_string(), e))?;
        *driver = reopen(req, self.serial.as_deref(), userspace)
            .map_err(|e| (step.to_string(), DeviceError::BadAddress(e)))?;
        Ok(())
    }
}

/// A restart before the first write that failed.
fn untouched((step, e): (String, DeviceError)) -> Stop {
    (
        Outcome::DeviceError,
        format!("{step} failed before anything was written: {e}"),
    )
}

/// Records `step` as the one the job stopped at, and says how to go on.
fn fail(report: &mut Report, step: &str, e: DeviceError) -> Stop {
    report.incomplete = Some(step.to_string());
    (
        Outcome::DeviceError,
        format!(
            "{step} failed: {e}. Every image before it is verified and kept: once the device is \
             back, run the same job again to resume from {step}"
        ),
    )
}

fn dynamic_of(driver: &mut dyn Driver) -> Result<&mut dyn DynamicPartitions, DeviceError> {
    driver
        .dynamic()
        .ok_or(DeviceError::Unsupported("fastbootd and dynamic partitions"))
}

/// Finds the phone again after a restart: over TCP at the same address, on USB by its
/// serial number (its USB identity may change between bootloader and fastbootd), in the
/// mode asked for, within the job's switch timeout.
fn reopen(
    req: &JobRequest,
    serial: Option<&str>,
    userspace: bool,
) -> Result<Box<dyn Driver>, String> {
    let address = match serial {
        Some(serial) if !req.device.address.starts_with("tcp:") => serial.to_string(),
        _ => req.device.address.clone(),
    };
    let mode = if userspace {
        "fastbootd"
    } else {
        "the bootloader"
    };
    let deadline = Instant::now() + req.options.switch_timeout;
    loop {
        let last = match open_at(req, &address, false) {
            Ok(mut driver) => match back_as(driver.as_mut(), serial, userspace) {
                Ok(()) => return Ok(driver),
                Err(e) => e,
            },
            Err((_, e)) => e,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "the phone did not come back in {mode} at {address} within {:?} ({last})",
                req.options.switch_timeout
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the device just opened is the phone, in the mode asked for.
fn back_as(driver: &mut dyn Driver, serial: Option<&str>, userspace: bool) -> Result<(), String> {
    if let Some(serial) = serial {
        let now = driver.variable("serialno").map_err(|e| e.to_string())?;
        if now.as_deref().map(str::trim) != Some(serial) {
            return Err(format!("another device answered (serial {now:?})"));
        }
    }
    let d = dynamic_of(driver).map_err(|e| e.to_string())?;
    match d.is_userspace().map_err(|e| e.to_string())? {
        is if is == userspace => Ok(()),
        true => Err("it answered from fastbootd".into()),
        false => Err("it answered from its bootloader, not from fastbootd".into()),
    }
}

/// Reads in fastbootd what decides whether the package fits super.
fn read_facts(driver: &mut dyn Driver) -> Result<SuperFacts, DeviceError> {
    let listed = driver.identify()?;
    let mut logical = BTreeMap::new();
    for (partition, size) in &listed.partitions {
        let answer = driver.variable(&format!("is-logical:{partition}"))?;
        if answer.as_deref().map(str::trim) == Some("yes") {
            logical.insert(partition.clone(), *size);
        }
    }
    let d = dynamic_of(driver)?;
    let super_name = d.super_partition_name()?.unwrap_or_else(|| "super".into());
    let super_size = d.size_now(&super_name)?;
    let snapshot_pending = match d.snapshot_status()? {
        SnapshotStatus::None => None,
        SnapshotStatus::Pending(status) => Some(status),
    };
    Ok(SuperFacts {
        super_name,
        super_size,
        logical,
        snapshot_pending,
    })
}

/// The package's `super_empty.img` as the driver sends it.
struct SuperEmpty<'p>(&'p VerifiedPackage);

impl SuperEmpty<'_> {
    fn reader(&self) -> std::io::Result<ImageReader> {
        self.0
            .open_super_empty()
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

impl ImageSource for SuperEmpty<'_> {
    fn len(&self) -> u64 {
        self.0
            .manifest()
            .dynamic
            .as_ref()
            .map_or(0, |d| d.super_empty.size)
    }

    fn is_sparse(&self) -> bool {
        false
    }

    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(self.reader()?))
    }

    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Signed(self.reader()?)))
    }
}

/// A hashing package reader as a driver's [`SendReader`].
struct Signed(ImageReader);

impl Read for Signed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl SendReader for Signed {
    fn verify(self: Box<Self>) -> Result<(), String> {
        self.0.finish().map(drop).map_err(|e| e.to_string())
    }
}
