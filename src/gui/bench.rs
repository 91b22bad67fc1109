//! The demo bench behind `flashline demo`: virtual devices started in-process and demo
//! packages signed with the demo key (trusted for virtual devices only).
//!
//! The devices are the same simulators the tests use, speaking the real protocols: phones
//! in fastboot over TCP, a hotspot and a dongle answering AT on pseudo-terminals that
//! re-enumerate into EDL when switched, and a bricked device already in EDL. Serial devices
//! announce themselves in the bench folder of flashline's home, where discovery looks.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::demo::{demo_key, demo_phone, phone_package, write_image};
use crate::sim::phone::{PhoneSim, RunningPhone};
#[cfg(unix)]
use {
    crate::protocol::gpt::Gpt,
    crate::sim::bench::VirtualModem,
    crate::sim::edl::{build_test_programmer, lun_path, EdlConfig, EdlSim, RunningEdl},
    crate::sim::modem::ModemConfig,
    sha2::{Digest, Sha256},
};

const MIB: u64 = 1024 * 1024;

/// What to put on the bench.
#[derive(Debug, Clone, Copy)]
pub struct BenchSpec {
    /// Virtual A/B phones in fastboot.
    pub phones: usize,
    /// The Qualcomm devices: a hotspot, a dongle and a bricked dongle in EDL.
    pub qualcomm: bool,
}

impl Default for BenchSpec {
    /// The demo: one phone, the hotspot, the dongle and the brick.
    fn default() -> Self {
        BenchSpec {
            phones: 1,
            qualcomm: true,
        }
    }
}

/// The packages the bench builds.
#[derive(Debug, Clone)]
pub struct DemoPackages {
    /// Stock firmware 2.1.0 for the virtual phone.
    pub phone: PathBuf,
    /// An older phone firmware (1.9.0, security version 6): preflight refuses it.
    pub phone_old: PathBuf,
    /// The phone package with one image byte changed: verification refuses it.
    pub phone_tampered: PathBuf,
    /// A Qualcomm flat build for the MF833V dongle and the MU300 hotspot; absent without them.
    pub modem: Option<PathBuf>,
}

impl DemoPackages {
    /// All of them, for one-click buttons.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut all = vec![self.phone.clone()];
        all.extend(self.modem.clone());
        all.push(self.phone_old.clone());
        all.push(self.phone_tampered.clone());
        all
    }
}

/// A running bench; dropping it stops every device.
pub struct DemoBench {
    /// The packages.
    pub packages: DemoPackages,
    phones: Vec<RunningPhone>,
    #[cfg(unix)]
    modems: Vec<VirtualModem>,
    #[cfg(unix)]
    brick: Option<RunningEdl>,
    work: PathBuf,
}

impl DemoBench {
    /// Builds the packages in `work` and starts the devices; serial devices announce
    /// themselves in `bench_dir` (discovery's folder: [`crate::device::bench::default_dir`]).
    pub fn start(work: &Path, bench_dir: &Path, spec: BenchSpec) -> Result<Self> {
        std::fs::create_dir_all(work)
            .with_context(|| format!("cannot create {}", work.display()))?;
        let (phone, _) = phone_package(work).context("cannot build the demo phone package")?;
        let phone_old = small_phone_package(work).context("cannot build the old phone package")?;
        let phone_tampered = tampered_copy(&phone, &work.join("demo-phone-tampered.flpkg"))
            .context("cannot build the tampered package")?;
        let mut phones = Vec::new();
        for n in 0..spec.phones {
            let cfg = demo_phone(&format!("FLSIM{:04}", n + 1));
            let dir = work.join(format!("virtual-phone-{}", n + 1));
            phones.push(
                PhoneSim::start("127.0.0.1:0".parse()?, &dir, cfg)
                    .context("cannot start a virtual phone")?,
            );
        }
        let mut bench = DemoBench {
            packages: DemoPackages {
                phone,
                phone_old,
                phone_tampered,
                modem: None,
            },
            phones,
            #[cfg(unix)]
            modems: Vec::new(),
            #[cfg(unix)]
            brick: None,
            work: work.to_path_buf(),
        };
        if spec.qualcomm {
            bench.start_qualcomm(bench_dir)?;
        }
        Ok(bench)
    }

    /// The serial devices need pseudo-terminals: on Windows the bench has phones only.
    #[cfg(not(unix))]
    fn start_qualcomm(&mut self, _bench_dir: &Path) -> Result<()> {
        tracing::warn!(
            "the virtual modems and the EDL device need pseudo-terminals; this bench has phones only"
        );
        Ok(())
    }

    #[cfg(unix)]
    fn start_qualcomm(&mut self, bench_dir: &Path) -> Result<()> {
        let programmer = build_test_programmer(&noise(64 * 1024, 7));
        let edl = EdlConfig {
            programmer_sha256: Some(Sha256::digest(&programmer).into()),
            ..EdlConfig::default()
        };
        self.packages.modem = Some(
            qualcomm_package(&self.work, &programmer)
                .context("cannot build the demo modem package")?,
        );
        let hotspot = ModemConfig {
            usb_serial: "FLHOTSPOT01".into(),
            imei: "868611040000023".into(),
            ..ModemConfig::hotspot()
        };
        let dongle = ModemConfig {
            usb_serial: "FLDONGLE001".into(),
            ..ModemConfig::dongle()
        };
        for (name, cfg) in [("hotspot", hotspot), ("dongle", dongle)] {
            let dir = self.work.join(format!("virtual-{name}"));
            self.modems.push(
                VirtualModem::start(cfg, edl.clone(), &dir, bench_dir)
                    .with_context(|| format!("cannot start the virtual {name}"))?,
            );
        }
        let brick = EdlConfig {
            serial: "FLBRICK0001".into(),
            ..edl
        };
        self.brick = Some(
            EdlSim::start(&self.work.join("virtual-brick"), brick, Some(bench_dir))
                .context("cannot start the bricked device")?,
        );
        Ok(())
    }

    /// The phones' addresses (`tcp:127.0.0.1:PORT`), for discovery to watch.
    pub fn phone_addresses(&self) -> Vec<String> {
        self.phones
            .iter()
            .map(RunningPhone::device_address)
            .collect()
    }

    /// The folder holding the packages and the devices' storage.
    pub fn work_dir(&self) -> &Path {
        &self.work
    }

    /// Stops every device.
    pub fn stop(self) {
        for phone in self.phones {
            phone.stop();
        }
        #[cfg(unix)]
        for modem in self.modems {
            modem.stop();
        }
        #[cfg(unix)]
        if let Some(brick) = self.brick {
            brick.stop();
        }
    }
}

/// An older release for the phone, to show a refused downgrade.
fn small_phone_package(work: &Path) -> Result<PathBuf> {
    let src = work.join("package-old");
    std::fs::create_dir_all(&src)?;
    write_image(
        &src.join("boot.img"),
        2 * MIB,
        Some(("1.9.0", 6)),
        &[(2 * MIB, true)],
    )?;
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"demo-phone-stock\"\nversion = \"1.9.0\"\nsecurity_version = 6\nmin_battery_percent = 30\n\
         description = \"An older release: the virtual phone already runs 2.0.0\"\n\n\
         [[target]]\nproduct = \"zte-demo-phone\"\n\n\
         [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n",
    )?;
    let pkg = work.join("demo-phone-stock-1.9.0.flpkg");
    crate::package::pack(&src.join("manifest.toml"), &demo_key(work)?, &pkg)?;
    Ok(pkg)
}

/// A copy of `pkg` with one byte of its last image changed.
fn tampered_copy(pkg: &Path, out: &Path) -> Result<PathBuf> {
    std::fs::copy(pkg, out)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(out)?;
    let at = file.metadata()?.len().saturating_sub(4096);
    file.seek(SeekFrom::Start(at))?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte)?;
    file.seek(SeekFrom::Start(at))?;
    file.write_all(&[byte[0] ^ 0x5a])?;
    Ok(out.to_path_buf())
}

/// A Qualcomm flat build for the default virtual layout: sbl1, boot and modem images at
/// their partitions, and patches that use the disk's size and a CRC, as real builds do.
#[cfg(unix)]
fn qualcomm_package(work: &Path, programmer: &[u8]) -> Result<PathBuf> {
    let src = work.join("package-modem");
    std::fs::create_dir_all(&src)?;
    let layout = reference_layout(&src.join("reference-device"))?;
    let at = |label: &str| {
        layout
            .iter()
            .find(|p| p.0 == label)
            .map(|p| (p.1, p.2))
            .with_context(|| format!("the virtual layout has no {label}"))
    };
    std::fs::write(src.join("prog_firehose_ddr.elf"), programmer)?;
    write_image(
        &src.join("sbl1.mbn"),
        256 * 1024,
        None,
        &[(256 * 1024, true)],
    )?;
    write_image(&src.join("boot.img"), 6 * MIB, None, &[(6 * MIB, true)])?;
    write_image(
        &src.join("NON-HLOS.bin"),
        16 * MIB,
        None,
        &[(8 * MIB, true), (8 * MIB, false)],
    )?;
    let (sbl1, sbl1_n) = at("sbl1")?;
    let (boot, boot_n) = at("boot")?;
    let (modem, modem_n) = at("modem")?;
    let (userdata, _) = at("userdata")?;
    std::fs::write(
        src.join("rawprogram0.xml"),
        format!(
            r#"<?xml version="1.0" ?>
<data>
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="sbl1.mbn" label="sbl1" num_partition_sectors="{sbl1_n}" physical_partition_number="0" start_sector="{sbl1}" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="boot.img" label="boot" num_partition_sectors="{boot_n}" physical_partition_number="0" start_sector="{boot}" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="NON-HLOS.bin" label="modem" num_partition_sectors="{modem_n}" physical_partition_number="0" start_sector="{modem}" />
</data>
"#
        ),
    )?;
    std::fs::write(
        src.join("patch0.xml"),
        format!(
            r#"<?xml version="1.0" ?>
<patches>
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="DISK" physical_partition_number="0" size_in_bytes="8" start_sector="{userdata}" value="NUM_DISK_SECTORS-1." what="last sector" />
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="8" filename="DISK" physical_partition_number="0" size_in_bytes="4" start_sector="{userdata}" value="CRC32({boot}.,512.)" what="CRC of boot's first sector" />
</patches>
"#
        ),
    )?;
    std::fs::write(
        src.join("manifest.toml"),
        "name = \"demo-zte-modem-stock\"\nversion = \"1.0.12\"\nsecurity_version = 3\nmin_battery_percent = 25\n\
         description = \"Demo flat build for the virtual ZTE dongle and hotspot\"\n\
         [[target]]\nproduct = \"MF833V\"\n[[target]]\nproduct = \"MU300\"\n\
         [qualcomm]\nprogrammer = \"prog_firehose_ddr.elf\"\nrawprogram = [\"rawprogram0.xml\"]\npatch = [\"patch0.xml\"]\n",
    )?;
    let pkg = work.join("demo-zte-modem-stock-1.0.12.flpkg");
    crate::package::pack(&src.join("manifest.toml"), &demo_key(work)?, &pkg)?;
    Ok(pkg)
}

/// The default virtual device's partitions: (label, first sector, sectors).
#[cfg(unix)]
fn reference_layout(dir: &Path) -> Result<Vec<(String, u64, u64)>> {
    drop(EdlSim::new(dir, EdlConfig::default(), None)?);
    let mut head = vec![0u8; 34 * 512];
    std::fs::File::open(lun_path(dir, 0))?.read_exact(&mut head)?;
    let gpt = Gpt::parse(512, &head)?;
    let layout = gpt
        .partitions
        .iter()
        .map(|p| (p.label.clone(), p.first_lba, p.sectors()))
        .collect();
    std::fs::remove_dir_all(dir)?;
    Ok(layout)
}

/// Deterministic bytes (xorshift), for the programmer's payload.
#[cfg(unix)]
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
