//! The Qualcomm side of the test bench: a flat build (programmer, rawprogram and patch
//! files) for the virtual EDL device's default layout, and checks of what its LUN holds.

use std::path::Path;

use flashline::protocol::gpt::Gpt;
use flashline::sim::edl::{build_test_programmer, EdlConfig, EdlSim};
use sha2::{Digest, Sha256};

/// Sector size of the default (eMMC) virtual device.
pub const SECTOR: u64 = 512;

/// The identity partitions of the default layout.
pub const IDENTITY: [&str; 5] = ["modemst1", "modemst2", "fsg", "fsc", "persist"];

/// The test programmer every flat build carries.
pub fn programmer() -> Vec<u8> {
    build_test_programmer(&data(20_000, 7))
}

/// The default virtual device, running only the test programmer (secure boot).
pub fn edl_config() -> EdlConfig {
    EdlConfig {
        programmer_sha256: Some(Sha256::digest(programmer()).into()),
        ..EdlConfig::default()
    }
}

/// Where a partition of the virtual device lives: (first sector, sectors).
pub fn layout(lun_file: &Path) -> Vec<(String, u64, u64)> {
    let bytes = std::fs::read(lun_file).unwrap();
    let gpt = Gpt::parse(SECTOR as u32, &bytes[..(34 * SECTOR) as usize]).unwrap();
    gpt.partitions
        .iter()
        .map(|p| (p.label.clone(), p.first_lba, p.sectors()))
        .collect()
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
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

/// Writes a flat build for the default virtual layout into `src`: sbl1, boot and modem
/// images at their sectors, a placeholder, and DISK patches using NUM_DISK_SECTORS and
/// CRC32. `boot_start` replaces boot's start sector when not empty; `tweak` is added to
/// the patch file.
pub fn write_flat_build(
    src: &Path,
    name: &str,
    version: &str,
    product: &str,
    boot_start: &str,
    tweak: &str,
) {
    std::fs::create_dir_all(src).unwrap();
    let parts = reference_layout();
    let at = |label: &str| {
        parts
            .iter()
            .find(|p| p.0 == label)
            .map(|p| (p.1, p.2))
            .unwrap()
    };
    std::fs::write(src.join("prog_firehose_ddr.elf"), programmer()).unwrap();
    std::fs::write(src.join("sbl1.mbn"), data(300 * 1024, 1)).unwrap();
    std::fs::write(src.join("boot.img"), data(2 * 1024 * 1024 + 100, 2)).unwrap();
    std::fs::write(src.join("NON-HLOS.bin"), data(5 * 1024 * 1024, 3)).unwrap();
    let (sbl1, sbl1_n) = at("sbl1");
    let (boot, boot_n) = at("boot");
    let (modem, modem_n) = at("modem");
    let (userdata, userdata_n) = at("userdata");
    let boot_start = if boot_start.is_empty() {
        format!("{boot}")
    } else {
        boot_start.to_string()
    };
    std::fs::write(
        src.join("rawprogram0.xml"),
        format!(
            r#"<?xml version="1.0" ?>
<data>
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="sbl1.mbn" label="sbl1" num_partition_sectors="{sbl1_n}" physical_partition_number="0" start_sector="{sbl1}" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="boot.img" label="boot" num_partition_sectors="{boot_n}" physical_partition_number="0" start_sector="{boot_start}" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="NON-HLOS.bin" label="modem" num_partition_sectors="{modem_n}" physical_partition_number="0" start_sector="{modem}" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="" label="userdata" num_partition_sectors="{userdata_n}" physical_partition_number="0" start_sector="{userdata}" />
</data>
"#
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("patch0.xml"),
        format!(
            r#"<?xml version="1.0" ?>
<patches>
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="gpt_main0.bin" physical_partition_number="0" size_in_bytes="8" start_sector="1" value="NUM_DISK_SECTORS-1." what="file patch, not for the device" />
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="DISK" physical_partition_number="0" size_in_bytes="8" start_sector="{userdata}" value="NUM_DISK_SECTORS-1." what="last sector" />
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="8" filename="DISK" physical_partition_number="0" size_in_bytes="4" start_sector="{userdata}" value="CRC32({boot}.,512.)" what="CRC of boot's first sector" />
  {tweak}
</patches>
"#
        ),
    )
    .unwrap();
    std::fs::write(
        src.join("manifest.toml"),
        format!(
            "name = \"{name}\"\nversion = \"{version}\"\nsecurity_version = 3\nmin_battery_percent = 25\n[[target]]\nproduct = \"{product}\"\n[qualcomm]\nprogrammer = \"prog_firehose_ddr.elf\"\nrawprogram = [\"rawprogram0.xml\"]\npatch = [\"patch0.xml\"]\n"
        ),
    )
    .unwrap();
}

/// The default virtual layout, read from a freshly created LUN.
pub fn reference_layout() -> Vec<(String, u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    drop(EdlSim::new(dir.path(), EdlConfig::default(), None).unwrap());
    layout(&flashline::sim::edl::lun_path(dir.path(), 0))
}

pub fn region(lun: &[u8], start: u64, sectors: u64) -> &[u8] {
    &lun[(start * SECTOR) as usize..((start + sectors) * SECTOR) as usize]
}

pub fn identity_hashes(lun_file: &Path) -> Vec<Vec<u8>> {
    let lun = std::fs::read(lun_file).unwrap();
    let parts = layout(lun_file);
    IDENTITY
        .iter()
        .map(|label| {
            let (_, start, n) = parts.iter().find(|p| p.0 == *label).unwrap();
            Sha256::digest(region(&lun, *start, *n)).to_vec()
        })
        .collect()
}

/// Asserts the LUN holds exactly what the flat build describes.
pub fn assert_flashed(src: &Path, lun_file: &Path) {
    let lun = std::fs::read(lun_file).unwrap();
    let parts = layout(lun_file);
    let at = |label: &str| {
        parts
            .iter()
            .find(|p| p.0 == label)
            .map(|p| (p.1, p.2))
            .unwrap()
    };
    for (label, file) in [
        ("sbl1", "sbl1.mbn"),
        ("boot", "boot.img"),
        ("modem", "NON-HLOS.bin"),
    ] {
        let image = std::fs::read(src.join(file)).unwrap();
        let (start, _) = at(label);
        let sectors = (image.len() as u64).div_ceil(SECTOR);
        let written = region(&lun, start, sectors);
        assert_eq!(
            &written[..image.len()],
            &image[..],
            "{label} holds its image"
        );
        assert!(
            written[image.len()..].iter().all(|&b| b == 0),
            "{label}: the last sector is zero-padded"
        );
    }
    let (userdata, _) = at("userdata");
    let patched = region(&lun, userdata, 1);
    let disk_sectors = (lun.len() as u64) / SECTOR;
    assert_eq!(
        u64::from_le_bytes(patched[..8].try_into().unwrap()),
        disk_sectors - 1
    );
    let boot = std::fs::read(src.join("boot.img")).unwrap();
    assert_eq!(
        u32::from_le_bytes(patched[8..12].try_into().unwrap()),
        crc32fast::hash(&boot[..512])
    );
}
