//! A modern A/B phone flashed through its bootloader, then fastbootd, then super, against
//! the virtual phone's fastbootd over TCP: bytes of every partition checked where they
//! landed (logical ones through the LP extents of super), a fault at each step followed by
//! a run that resumes and completes, the plan-time refusal of a package that does not fit
//! super, a pending snapshot merge cancelled first, and a retrofit phone.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};

use common::bench::{image, Bench};
use flashline::engine::{self, Event, Outcome, Report};
use flashline::package::TrustStore;
use flashline::protocol::lp::{self, GroupSpec, PartitionSpec, SuperLayout};
use flashline::sim::fault::FaultPlan;
use flashline::sim::phone::{Dynamic, PhoneConfig, RunningPhone, SnapshotStatus};

const MIB: u64 = 1024 * 1024;
const SUPER: u64 = 64 * MIB;

/// The virtual phone: bootloader, boot (with slots) and super with system and vendor.
fn phone(dynamic: Dynamic) -> PhoneConfig {
    PhoneConfig {
        partitions: vec![("bootloader".into(), 2 * MIB), ("boot".into(), 4 * MIB)],
        slots: true,
        max_download_size: (4 * MIB) as u32,
        dynamic: Some(dynamic),
        ..PhoneConfig::default()
    }
}

fn modern() -> Dynamic {
    Dynamic {
        super_size: SUPER,
        logical: vec![("system".into(), 12 * MIB), ("vendor".into(), 4 * MIB)],
        retrofit: false,
        snapshot: SnapshotStatus::None,
        fastbootd_max_download_size: (2 * MIB) as u32,
    }
}

/// A `super_empty.img` for the phone: system and vendor per slot, sizes 0; on a retrofit
/// layout super is each slot's own `system` partition.
fn super_empty(retrofit: bool, virtual_ab: bool) -> Vec<u8> {
    let mut layout = SuperLayout::new(SUPER, 2);
    layout.virtual_ab = virtual_ab;
    let slots: &[&str] = if retrofit { &["_b"] } else { &["_a", "_b"] };
    for slot in slots {
        layout.groups.push(GroupSpec {
            name: format!("main{slot}"),
            maximum_size: 0,
        });
        for base in ["system", "vendor"] {
            layout.partitions.push(PartitionSpec {
                name: format!("{base}{slot}"),
                group: format!("main{slot}"),
                size: 0,
                attributes: 0,
            });
        }
    }
    if retrofit {
        layout.device_name = "system".into();
    }
    let mut metadata = layout.build().unwrap();
    if retrofit {
        metadata.block_devices[0].flags |= lp::BLOCK_DEVICE_SLOT_SUFFIXED;
    }
    let mut out = Vec::new();
    lp::write_empty_image(&metadata, &mut out).unwrap();
    out
}

/// The package's images, by partition.
struct Images {
    bootloader: Vec<u8>,
    boot: Vec<u8>,
    system: Vec<u8>,
    vendor: Vec<u8>,
}

fn images(system_len: usize) -> Images {
    let mut boot = image(2 * MIB as usize, 0, 0);
    let marker = b"FLASHLINE-VERSION=2.1.0\nFLASHLINE-SECURITY=7\n";
    boot[..marker.len()].copy_from_slice(marker);
    Images {
        bootloader: image(MIB as usize, 4096, 0),
        boot,
        // Larger than fastbootd's 2 MiB download buffer: sent in sparse pieces.
        system: image(
            system_len - MIB as usize,
            MIB as usize / 2,
            MIB as usize / 2,
        ),
        vendor: image(MIB as usize, 0, 4096),
    }
}

/// Packs a modern package: firmware with a bootloader restart, boot, then system and
/// vendor as logical partitions with the layout.
fn pack(bench: &Bench, name: &str, imgs: &Images, layout: &[u8]) -> PathBuf {
    pack_with(bench, name, imgs, Some(layout))
}

/// [`pack`], with or without the `[dynamic]` layout.
fn pack_with(bench: &Bench, name: &str, imgs: &Images, layout: Option<&[u8]>) -> PathBuf {
    let dir = bench.path(&format!("src-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, bytes) in [
        ("bootloader.img", &imgs.bootloader),
        ("boot.img", &imgs.boot),
        ("system.img", &imgs.system),
        ("vendor.img", &imgs.vendor),
    ] {
        std::fs::write(dir.join(file), bytes).unwrap();
    }
    let dynamic = match layout {
        Some(layout) => {
            std::fs::write(dir.join("super_empty.img"), layout).unwrap();
            "[dynamic]\nsuper_empty = \"super_empty.img\"\n"
        }
        None => "",
    };
    std::fs::write(
        dir.join("manifest.toml"),
        "name = \"modern\"\nversion = \"2.1.0\"\nsecurity_version = 7\nmin_battery_percent = 30\n\
         [[target]]\nproduct = \"zte-demo-phone\"\n"
            .to_string()
            + dynamic
            + "\
         [[image]]\npartition = \"system\"\nfile = \"system.img\"\nlogical = true\n\
         [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n\
         [[image]]\npartition = \"vendor\"\nfile = \"vendor.img\"\nlogical = true\n\
         [[image]]\npartition = \"bootloader\"\nfile = \"bootloader.img\"\nreboot_bootloader = true\n",
    )
    .unwrap();
    bench.pack_manifest(&dir, name)
}

/// Runs one job in-process, returning its events and report.
fn run(bench: &Bench, pkg: &Path, phone: &RunningPhone) -> (Vec<Event>, Report) {
    run_with(bench, pkg, phone, false)
}

/// [`run`], asking for Google's optimized super (a whole super image from the bootloader)
/// or not: the other tests here prove the fastbootd path, which a package with every
/// logical image would otherwise skip.
fn run_with(
    bench: &Bench,
    pkg: &Path,
    phone: &RunningPhone,
    optimized_super: bool,
) -> (Vec<Event>, Report) {
    let trust = TrustStore::load_dir(&bench.path("keys")).unwrap();
    let mut req = common::virtual_job(pkg, trust, &phone.device_address(), &bench.path("home"));
    req.options.device_timeout = Some(std::time::Duration::from_secs(5));
    req.options.switch_timeout = std::time::Duration::from_secs(10);
    req.options.optimized_super = optimized_super;
    let mut events = Vec::new();
    let report = engine::run(&req, &mut |e| events.push(e));
    (events, report)
}

/// The bytes of logical partition `name` in the super file, read through its extents in
/// metadata slot `slot`.
fn logical(super_file: &Path, slot: u32, name: &str) -> Vec<u8> {
    let mut file = File::open(super_file).unwrap();
    let (_, metadata) = lp::read_metadata(&mut file, slot).unwrap();
    let mut out = Vec::new();
    lp::extract_partition(&mut file, &metadata, name, &mut out).unwrap();
    out
}

fn starts_with(stored: &[u8], image: &[u8], what: &str) {
    assert!(
        stored.len() >= image.len() && stored[..image.len()] == *image,
        "{what} does not hold its image ({} bytes stored, {} in the image)",
        stored.len(),
        image.len()
    );
}

/// Checks every partition of slot b holds its image and slot b is active.
fn assert_flashed(dir: &Path, imgs: &Images, phone: &RunningPhone) {
    starts_with(
        &std::fs::read(dir.join("bootloader_b.img")).unwrap(),
        &imgs.bootloader,
        "bootloader_b",
    );
    starts_with(
        &std::fs::read(dir.join("boot_b.img")).unwrap(),
        &imgs.boot,
        "boot_b",
    );
    let system = logical(&dir.join("super.img"), 1, "system_b");
    assert_eq!(system.len() as u64 % 4096, 0);
    starts_with(&system, &imgs.system, "system_b in super");
    starts_with(
        &logical(&dir.join("super.img"), 1, "vendor_b"),
        &imgs.vendor,
        "vendor_b in super",
    );
    let commands = phone.commands();
    assert!(commands.iter().any(|c| c == "set_active:b"), "{commands:?}");
}

fn switch_steps(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::SwitchStep { step, .. } => Some(step.split(':').next().unwrap().to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_virtual_ab_package_flashes_bootloader_then_fastbootd_then_super() {
    let bench = Bench::new();
    let imgs = images(6 * MIB as usize);
    let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
    let (phone, dir) = bench.phone(phone(modern()));
    let (events, report) = run(&bench, &pkg, &phone);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    assert_flashed(&dir, &imgs, &phone);

    // Google's order: the read-only visit, the firmware restart, then fastbootd.
    let commands = phone.commands();
    let position = |prefix: &str| {
        commands
            .iter()
            .position(|c| c.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {commands:?}"))
    };
    let mut flashes: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.strip_prefix("flash:"))
        .collect();
    flashes.dedup();
    assert_eq!(flashes, ["bootloader_b", "boot_b", "system_b", "vendor_b"]);
    assert!(position("flash:bootloader_b") < position("flash:boot_b"));
    let last_fastboot = commands
        .iter()
        .rposition(|c| c == "reboot-fastboot")
        .unwrap();
    let update = position("update-super:super");
    assert!(last_fastboot < update && update < position("resize-logical-partition:system_b:"));
    assert!(
        position("set_active:b") < last_fastboot,
        "the slot is set before fastbootd"
    );
    assert!(
        commands
            .iter()
            .filter(|c| c.starts_with("flash:system_b"))
            .count()
            > 1,
        "system is cut for fastbootd's 2 MiB buffer: {commands:?}"
    );
    assert_eq!(
        switch_steps(&events),
        [
            "reboot-fastboot",
            "reboot-bootloader",
            "reboot-bootloader",
            "set_active",
            "reboot-fastboot",
            "update-super"
        ]
    );
    assert!(report.images.iter().all(|i| i.status == "written"));
    assert!(report.incomplete.is_none());
}

#[test]
fn a_fault_at_each_step_fails_naming_it_and_the_next_run_completes() {
    for (fault, step) in [
        ("fail@reboot-fastboot#2", "reboot-fastboot"),
        ("fail@update-super#1", "update-super:super"),
        (
            "fail@resize-logical-partition:vendor_b#1",
            "resize-logical-partition:vendor_b",
        ),
        ("fail@flash:system_b#2", "system_b"),
        ("fail@reboot-bootloader#2", "reboot-bootloader:bootloader_b"),
        // The link lost in fastbootd: the next run finds the phone there.
        ("drop@update-super#1", "update-super:super"),
        // Power cut inside system_b (after bootloader and boot, 3 MiB in all).
        ("power-loss@bytes=5M", "system_b"),
    ] {
        let bench = Bench::new();
        let imgs = images(6 * MIB as usize);
        let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
        let cfg = PhoneConfig {
            faults: FaultPlan {
                faults: vec![fault.parse().unwrap()],
            },
            ..phone(modern())
        };
        let (phone, dir) = bench.phone(cfg);
        let (_, first) = run(&bench, &pkg, &phone);
        assert_eq!(first.outcome, Outcome::DeviceError, "{fault}");
        let incomplete = first.incomplete.clone().unwrap_or_default();
        assert!(
            incomplete.starts_with(step),
            "{fault}: incomplete {incomplete:?}"
        );
        assert!(
            first
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("run the same job again"),
            "{fault}: {:?}",
            first.error
        );
        // Once the phone is back (a power cut restarts it).
        std::thread::sleep(flashline::sim::phone::BOOT_TIME * 2);
        let (events, second) = run(&bench, &pkg, &phone);
        assert_eq!(
            second.outcome,
            Outcome::Success,
            "{fault}: {:?}",
            second.error
        );
        assert!(
            events.iter().any(|e| matches!(e, Event::Resuming { .. })),
            "{fault}: the second run resumes"
        );
        assert!(
            second.images.iter().any(|i| i.status == "kept"),
            "{fault}: images verified by the first run are kept"
        );
        assert_flashed(&dir, &imgs, &phone);
        // The run after an early switch to b took b for the slot to write, not for the old.
        let commands = phone.commands();
        assert!(
            !commands
                .iter()
                .any(|c| c.ends_with("_a") && c.starts_with("flash:")),
            "{fault}: slot a was written: {commands:?}"
        );
    }
}

#[test]
fn a_package_that_does_not_fit_super_is_refused_before_anything_is_written() {
    let bench = Bench::new();
    // 40 MiB of system beside slot a's 16 MiB (kept by update-super on plain A/B) and the
    // metadata: more than the 64 MiB super holds.
    let imgs = images(48 * MIB as usize);
    let pkg = pack(&bench, "too-big", &imgs, &super_empty(false, false));
    let (phone, dir) = bench.phone(phone(modern()));
    let before = common::bench::hashes(&dir);
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(
        report.outcome,
        Outcome::PreflightRefused,
        "{:?}",
        report.error
    );
    let error = report.error.unwrap();
    assert!(
        error.contains("Not enough space to resize partition"),
        "{error}"
    );
    assert!(
        error.contains("system_a"),
        "the fix names what to delete: {error}"
    );
    assert_eq!(common::bench::hashes(&dir), before, "nothing was written");
    let commands = phone.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("flash:")
            || c.starts_with("update-super")
            || c.starts_with("set_active")),
        "{commands:?}"
    );
}

#[test]
fn a_pending_snapshot_merge_is_cancelled_before_super_is_touched() {
    let bench = Bench::new();
    let imgs = images(4 * MIB as usize);
    let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
    let (phone, dir) = bench.phone(phone(Dynamic {
        snapshot: SnapshotStatus::Merging,
        ..modern()
    }));
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    let commands = phone.commands();
    let cancel = commands
        .iter()
        .position(|c| c == "snapshot-update:cancel")
        .expect("cancelled");
    let update = commands
        .iter()
        .position(|c| c.starts_with("update-super"))
        .unwrap();
    assert!(cancel < update, "{commands:?}");
    assert_flashed(&dir, &imgs, &phone);
}

#[test]
fn a_retrofit_phone_loses_the_other_slots_logical_partitions() {
    let bench = Bench::new();
    let imgs = images(4 * MIB as usize);
    let pkg = pack(&bench, "retrofit", &imgs, &super_empty(true, false));
    let (phone, dir) = bench.phone(phone(Dynamic {
        retrofit: true,
        ..modern()
    }));
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    let commands = phone.commands();
    for name in ["system_a", "vendor_a"] {
        assert!(
            commands.contains(&format!("delete-logical-partition:{name}")),
            "{commands:?}"
        );
    }
    assert!(
        commands.contains(&"update-super:system_b".to_string()),
        "{commands:?}"
    );
    let mut file = File::open(dir.join("system_a.img")).unwrap();
    let (_, slot_a) = lp::read_metadata(&mut file, 1).unwrap();
    assert!(slot_a.partition("system_a").is_none());
    starts_with(
        &logical(&dir.join("system_b.img"), 1, "system_b"),
        &imgs.system,
        "system_b in the retrofit super",
    );
}

#[test]
fn without_a_layout_the_logical_partitions_are_resized_in_place() {
    let bench = Bench::new();
    let imgs = images(4 * MIB as usize);
    let pkg = pack_with(&bench, "no-layout", &imgs, None);
    let (phone, dir) = bench.phone(phone(modern()));
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    let commands = phone.commands();
    assert!(
        !commands.iter().any(|c| c.starts_with("update-super")),
        "{commands:?}"
    );
    assert!(commands.contains(&format!(
        "resize-logical-partition:system_b:{}",
        imgs.system.len()
    )));
    assert_flashed(&dir, &imgs, &phone);
    // Slot a's partitions were never touched.
    assert_eq!(
        logical(&dir.join("super.img"), 0, "system_a").len() as u64,
        12 * MIB
    );
}

#[test]
fn logical_partitions_for_a_phone_without_super_are_refused_before_any_restart() {
    let bench = Bench::new();
    let imgs = images(4 * MIB as usize);
    let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
    let (phone, dir) = bench.phone(PhoneConfig {
        dynamic: None,
        ..phone(modern())
    });
    let before = common::bench::hashes(&dir);
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(
        report.outcome,
        Outcome::PreflightRefused,
        "{:?}",
        report.error
    );
    let error = report.error.unwrap();
    assert!(error.contains("does not use dynamic partitions"), "{error}");
    assert_eq!(common::bench::hashes(&dir), before);
    let commands = phone.commands();
    assert!(
        !commands
            .iter()
            .any(|c| c.starts_with("reboot") || c.starts_with("flash:")),
        "{commands:?}"
    );
}

#[test]
fn a_phone_without_slots_gets_its_logical_partitions_resized_in_its_one_super() {
    let bench = Bench::new();
    let imgs = images(4 * MIB as usize);
    let mut layout = SuperLayout::new(SUPER, 1);
    layout.groups.push(GroupSpec {
        name: "main".into(),
        maximum_size: 0,
    });
    for base in ["system", "vendor"] {
        layout.partitions.push(PartitionSpec {
            name: base.into(),
            group: "main".into(),
            size: 0,
            attributes: 0,
        });
    }
    let mut bytes = Vec::new();
    lp::write_empty_image(&layout.build().unwrap(), &mut bytes).unwrap();
    let pkg = pack(&bench, "one-slot", &imgs, &bytes);
    let (phone, dir) = bench.phone(PhoneConfig {
        slots: false,
        ..phone(modern())
    });
    let (_, report) = run(&bench, &pkg, &phone);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    starts_with(
        &std::fs::read(dir.join("boot.img")).unwrap(),
        &imgs.boot,
        "boot",
    );
    starts_with(
        &logical(&dir.join("super.img"), 0, "system"),
        &imgs.system,
        "system",
    );
    starts_with(
        &logical(&dir.join("super.img"), 0, "vendor"),
        &imgs.vendor,
        "vendor",
    );
    assert!(!phone.commands().iter().any(|c| c.starts_with("set_active")));
}

/// Whether fastbootd wrote the logical partitions: `update-super` and resizes were sent.
fn went_through_fastbootd(commands: &[String]) -> bool {
    commands.iter().any(|c| c.starts_with("update-super:"))
        && commands
            .iter()
            .any(|c| c.starts_with("resize-logical-partition:"))
}

#[test]
fn a_package_with_every_logical_image_flashes_super_whole_from_the_bootloader() {
    let bench = Bench::new();
    let imgs = images(6 * MIB as usize);
    let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
    let (phone, dir) = bench.phone(phone(modern()));
    let (events, report) = run_with(&bench, &pkg, &phone, true);
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    // The logical partitions, read back through super's LP extents, hold their images.
    assert_flashed(&dir, &imgs, &phone);

    let commands = phone.commands();
    assert!(
        !went_through_fastbootd(&commands),
        "{:?} {commands:?}",
        report.notes
    );
    for absent in [
        "update-super",
        "resize-logical-partition",
        "flash:system",
        "flash:vendor",
    ] {
        assert!(
            !commands.iter().any(|c| c.starts_with(absent)),
            "{absent} sent: {commands:?}"
        );
    }
    // fastbootd is visited once, to read super's size; nothing is written there.
    let fastbootd = commands.iter().filter(|c| *c == "reboot-fastboot").count();
    assert_eq!(fastbootd, 1, "{commands:?}");
    // Super goes in pieces that fit the bootloader's 4 MiB buffer, after the slot is set.
    let supers: Vec<usize> = (0..commands.len())
        .filter(|&i| commands[i] == "flash:super")
        .collect();
    assert!(supers.len() > 1, "{commands:?}");
    let active = commands.iter().position(|c| c == "set_active:b").unwrap();
    assert!(active < supers[0], "{commands:?}");
    assert!(
        commands.iter().position(|c| c == "flash:boot_b").unwrap() < supers[0],
        "{commands:?}"
    );
    assert_eq!(
        switch_steps(&events),
        [
            "reboot-fastboot",
            "reboot-bootloader",
            "reboot-bootloader",
            "set_active",
            "flash"
        ]
    );
    assert!(report.images.iter().all(|i| i.status == "written"));
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("optimized super")),
        "{:?}",
        report.notes
    );
    // slot a's partitions exist, empty: super was laid out fresh for slot b.
    let mut file = File::open(dir.join("super.img")).unwrap();
    let (_, metadata) = lp::read_metadata(&mut file, 0).unwrap();
    let system_a = metadata.partition("system_a").unwrap();
    assert_eq!(metadata.partition_size(system_a), 0);
}

#[test]
fn a_retrofit_phone_or_a_pending_merge_keeps_fastbootd_when_optimized_super_is_asked() {
    for (name, dynamic, layout, why) in [
        (
            "retrofit",
            Dynamic {
                retrofit: true,
                ..modern()
            },
            super_empty(true, false),
            "retrofit",
        ),
        (
            "merging",
            Dynamic {
                snapshot: SnapshotStatus::Merging,
                ..modern()
            },
            super_empty(false, true),
            "snapshot update",
        ),
    ] {
        let bench = Bench::new();
        let imgs = images(4 * MIB as usize);
        let pkg = pack(&bench, name, &imgs, &layout);
        let (phone, _dir) = bench.phone(phone(dynamic));
        let (_, report) = run_with(&bench, &pkg, &phone, true);
        assert_eq!(
            report.outcome,
            Outcome::Success,
            "{name}: {:?}",
            report.error
        );
        let commands = phone.commands();
        assert!(went_through_fastbootd(&commands), "{name}: {commands:?}");
        assert!(!commands.iter().any(|c| c == "flash:super"), "{commands:?}");
        assert!(
            report
                .notes
                .iter()
                .any(|n| n.contains("written in fastbootd") && n.contains(why)),
            "{name}: {:?}",
            report.notes
        );
    }
}

#[test]
fn an_interrupted_whole_super_flash_is_sent_again_whole_by_the_next_run() {
    let bench = Bench::new();
    let imgs = images(6 * MIB as usize);
    let pkg = pack(&bench, "modern", &imgs, &super_empty(false, true));
    let cfg = PhoneConfig {
        faults: FaultPlan {
            faults: vec!["fail@flash:super#2".parse().unwrap()],
        },
        ..phone(modern())
    };
    let (phone, dir) = bench.phone(cfg);
    let (_, first) = run_with(&bench, &pkg, &phone, true);
    assert_eq!(first.outcome, Outcome::DeviceError);
    assert_eq!(
        first.incomplete.as_deref(),
        Some("flash super (whole image)")
    );
    let (events, second) = run_with(&bench, &pkg, &phone, true);
    assert_eq!(second.outcome, Outcome::Success, "{:?}", second.error);
    assert!(events.iter().any(|e| matches!(e, Event::Resuming { .. })));
    assert_flashed(&dir, &imgs, &phone);
    let commands = phone.commands();
    assert!(!went_through_fastbootd(&commands), "{commands:?}");
}
