//! `flashline demo`: the whole main job on a built-in virtual bench.
//!
//! Builds a firmware package, signs it with the demo key, starts a virtual A/B phone
//! in-process, and flashes it exactly as a real job would: verify, identify, preflight,
//! plan, flash with progress (one image large enough to be split into sparse pieces),
//! switch slot, reboot, read the new version back, write the report. Finally it compares
//! the bytes stored on the virtual phone with the package's images.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::device::quirks::Quirks;
use crate::engine::{DeviceTarget, JobOptions, JobRequest, Outcome};
use crate::package::{self, TrustStore};
use crate::protocol::lp::{self, GroupSpec, PartitionSpec, SuperLayout};
use crate::sim::phone::{Dynamic, PhoneConfig, PhoneSim};

const MIB: u64 = 1024 * 1024;

/// The demo key's secret half. It is public on purpose: packages it signs are trusted only
/// for virtual devices.
const DEMO_SECRET_KEY: &str = include_str!("../../assets/demo-keys/flashline-demo-INSECURE.key");

/// Runs the demo in `dir` (or a temporary folder).
pub fn run(dir: Option<&Path>, json: bool) -> Result<ExitCode> {
    let temp;
    let work: PathBuf = match dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.to_path_buf()
        }
        None => {
            temp = tempfile::tempdir().context("cannot create a temporary folder")?;
            temp.path().to_path_buf()
        }
    };
    let say = |text: &str| {
        if !json {
            println!("{text}");
        }
    };

    say("flashline demo: a signed package flashed onto a virtual A/B phone\n");
    let (pkg, summary) = phone_package(&work)?;
    let pkg_dir = work.join("package");
    say(&format!(
        "Packed {} {} with {} images, signed with the demo key {} (trusted for virtual devices only).",
        summary.manifest.name,
        summary.manifest.version,
        summary.manifest.images.len(),
        summary.key_id
    ));

    let phone_dir = work.join("virtual-phone");
    let phone = PhoneSim::start("127.0.0.1:0".parse()?, &phone_dir, demo_phone("FLSIM0001"))?;
    say(&format!(
        "Virtual phone zte-demo-phone (firmware 2.0.0, battery 76 %, slots a/b, system and vendor \
         in super, 16 MiB download buffer) at {}.",
        phone.device_address()
    ));

    let req = JobRequest {
        package: pkg.clone(),
        trust: TrustStore::demo(),
        device: DeviceTarget {
            address: phone.device_address(),
            is_virtual: true,
            probe: false,
        },
        quirks: Quirks::builtin(),
        options: JobOptions {
            reconnect: Duration::from_secs(5),
            ..JobOptions::under(&work)
        },
    };
    let report = super::run_job(req, json)?;
    if report.outcome != Outcome::Success {
        return Ok(super::exit_code(report.outcome));
    }

    let mut all_equal = true;
    for (image, signed) in report.images.iter().zip(&summary.manifest.images) {
        let source = pkg_dir.join(format!("{}.img", image.partition));
        let equal = if signed.logical {
            same_in_super(&source, &phone_dir.join("super.img"), &image.target)?
        } else {
            same_prefix(
                &mut File::open(&source)?,
                &mut File::open(phone_dir.join(format!("{}.img", image.target)))?,
            )?
        };
        all_equal &= equal;
        say(&format!(
            "Bytes on the virtual phone, {}: {}",
            image.target,
            if equal {
                "identical to the package image"
            } else {
                "DIFFERENT"
            }
        ));
    }
    say("\nThe job report (also written as JSON to the report folder):");
    say(&serde_json::to_string_pretty(&report)?);
    if let Some(after) = &report.after {
        say(&format!(
            "After reboot the phone reports firmware {} (security version {}).",
            after.firmware.as_deref().unwrap_or("?"),
            after.security.map_or("?".into(), |s| s.to_string())
        ));
    }
    if dir.is_none() {
        say("(The demo used a temporary folder; pass --dir DIR to keep the package, the partitions and the report.)");
    }
    phone.stop();
    Ok(if all_equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The demo's virtual phone: a modern A/B phone (launched with Android 10 or later), its
/// system and vendor logical partitions in super (flashed whole by default, or written
/// from fastbootd with the super optimization off); its bootloader
/// and fastbootd both take 16 MiB per download. The GUI's demo bench uses it too.
pub(crate) fn demo_phone(serial: &str) -> PhoneConfig {
    PhoneConfig {
        serial: serial.into(),
        firmware_version: "2.0.0".into(),
        security_version: 7,
        battery_percent: Some(76),
        max_download_size: (16 * MIB) as u32,
        partitions: vec![("bootloader".into(), 4 * MIB), ("boot".into(), 16 * MIB)],
        slots: true,
        dynamic: Some(Dynamic {
            super_size: DEMO_SUPER_SIZE,
            logical: vec![("system".into(), 64 * MIB), ("vendor".into(), 8 * MIB)],
            fastbootd_max_download_size: (16 * MIB) as u32,
            ..Dynamic::default()
        }),
        ..PhoneConfig::default()
    }
}

/// The size of the demo phone's super.
const DEMO_SUPER_SIZE: u64 = 192 * MIB;

/// Builds the demo phone package in `work` (sources in `work/package`), signed with the
/// demo key; the GUI's demo bench uses it too. It is a modern one, as a factory image is:
/// firmware flashed from the bootloader (which restarts after it), boot, then system and
/// vendor in super, with the `super_empty.img` that lays super out.
pub(crate) fn phone_package(work: &Path) -> Result<(PathBuf, package::PackSummary)> {
    let pkg_dir = work.join("package");
    std::fs::create_dir_all(&pkg_dir)?;
    write_image(&pkg_dir.join("bootloader.img"), MIB, None, &[(MIB, true)])?;
    write_image(
        &pkg_dir.join("boot.img"),
        8 * MIB,
        Some(("2.1.0", 8)),
        &[(8 * MIB, true)],
    )?;
    write_image(
        &pkg_dir.join("system.img"),
        48 * MIB,
        None,
        &[(16 * MIB, true), (24 * MIB, false), (8 * MIB, true)],
    )?;
    write_image(
        &pkg_dir.join("vendor.img"),
        4 * MIB,
        None,
        &[(2 * MIB, true), (2 * MIB, false)],
    )?;
    write_super_empty(&pkg_dir.join("super_empty.img"))?;
    std::fs::write(
        pkg_dir.join("manifest.toml"),
        "name = \"demo-phone-stock\"\nversion = \"2.1.0\"\nsecurity_version = 8\nmin_battery_percent = 30\n\
         description = \"Demo firmware for flashline's virtual phone\"\n\n\
         [[target]]\nproduct = \"zte-demo-phone\"\n\n\
         [dynamic]\nsuper_empty = \"super_empty.img\"\n\n\
         [[image]]\npartition = \"bootloader\"\nfile = \"bootloader.img\"\nreboot_bootloader = true\n\n\
         [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n\n\
         [[image]]\npartition = \"system\"\nfile = \"system.img\"\nlogical = true\n\n\
         [[image]]\npartition = \"vendor\"\nfile = \"vendor.img\"\nlogical = true\n",
    )?;
    let pkg = work.join("demo-phone-stock-2.1.0.flpkg");
    let summary = package::pack(&pkg_dir.join("manifest.toml"), &demo_key(work)?, &pkg)?;
    Ok((pkg, summary))
}

/// Writes the demo key's secret half into `work` and returns its path.
pub(crate) fn demo_key(work: &Path) -> Result<PathBuf> {
    let key = work.join("flashline-demo-INSECURE.key");
    std::fs::write(&key, DEMO_SECRET_KEY)?;
    Ok(key)
}

/// Writes a demo image: `regions` of (length, random?) — random bytes or zeros — with an
/// optional version marker the virtual phone reads back after flashing.
pub(crate) fn write_image(
    path: &Path,
    len: u64,
    marker: Option<(&str, u64)>,
    regions: &[(u64, bool)],
) -> Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ len;
    let mut block = vec![0u8; MIB as usize];
    let mut written = 0u64;
    for &(region, random) in regions {
        let mut left = region;
        while left > 0 {
            let n = left.min(MIB) as usize;
            if random {
                for chunk in block[..n].chunks_mut(8) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    chunk.copy_from_slice(&rng.to_le_bytes()[..chunk.len()]);
                }
            } else {
                block[..n].fill(0);
            }
            if written == 0 {
                if let Some((version, security)) = marker {
                    let tag =
                        format!("FLASHLINE-VERSION={version}\nFLASHLINE-SECURITY={security}\n");
                    block[..tag.len()].copy_from_slice(tag.as_bytes());
                }
            }
            out.write_all(&block[..n])?;
            written += n as u64;
            left -= n as u64;
        }
    }
    debug_assert_eq!(written, len);
    out.flush()?;
    Ok(())
}

/// Writes the demo phone's `super_empty.img`: system and vendor for each slot, in one
/// group per slot, sizes left to the flash (as in a factory image).
fn write_super_empty(path: &Path) -> Result<()> {
    let mut layout = SuperLayout::new(DEMO_SUPER_SIZE, 2);
    for slot in ["a", "b"] {
        // The groups the virtual phone's super has, as a device's own super_empty.img
        // names its groups: update-super keeps slot a's partitions only in a group of
        // the same name.
        let group = format!("main_{slot}");
        layout.groups.push(GroupSpec {
            name: group.clone(),
            maximum_size: DEMO_SUPER_SIZE / 2 - MIB,
        });
        for base in ["system", "vendor"] {
            layout.partitions.push(PartitionSpec {
                name: format!("{base}_{slot}"),
                group: group.clone(),
                size: 0,
                attributes: lp::PARTITION_ATTR_READONLY,
            });
        }
    }
    let metadata = layout.build()?;
    let mut out = BufWriter::new(File::create(path)?);
    lp::write_empty_image(&metadata, &mut out)?;
    out.flush()?;
    Ok(())
}

/// True if logical partition `name` of the super image `super_image` starts with the bytes
/// of `image`, read through its extents in the metadata of the slot its name ends with.
fn same_in_super(image: &Path, super_image: &Path, name: &str) -> Result<bool> {
    let slot = u32::from(name.ends_with("_b"));
    let mut file = File::open(super_image)?;
    let (_, metadata) = lp::read_metadata(&mut file, slot)?;
    let mut stored = Vec::new();
    lp::extract_partition(&mut file, &metadata, name, &mut stored)?;
    same_prefix(&mut File::open(image)?, &mut stored.as_slice())
}

/// True if `partition` starts with the bytes of `image`.
fn same_prefix(a: &mut impl Read, b: &mut impl Read) -> Result<bool> {
    let mut x = vec![0u8; MIB as usize];
    let mut y = vec![0u8; MIB as usize];
    loop {
        let n = a.read(&mut x)?;
        if n == 0 {
            return Ok(true);
        }
        if b.read_exact(&mut y[..n]).is_err() {
            return Ok(false);
        }
        if x[..n] != y[..n] {
            return Ok(false);
        }
    }
}
