//! The identity partitions (modemst1, modemst2, fsg, fsc, persist: IMEI, calibration,
//! network settings) stay where the device keeps them.
//!
//! A flat build may carry its own partition table (`gpt_main0.bin`, written at sector 0).
//! If that table puts an identity partition somewhere else, the device's irreplaceable
//! bytes would be left behind in what the new table calls another partition, and the new
//! range would hold whatever was there. Such a package is refused before anything is
//! written: flashline does not yet move the backed-up bytes into new ranges itself.

use std::io::Read;

use crate::device::{DeviceInfo, Target};
use crate::package::qualcomm::ProgramOp;
use crate::package::VerifiedPackage;
use crate::protocol::gpt::Gpt;

/// Largest image read as a partition table: a GPT with 128 entries is 34 sectors of 512
/// bytes or 6 of 4096.
const MAX_TABLE_LEN: u64 = 1024 * 1024;

/// For each identity label the device has, how the package's own partition table would
/// move or drop it; empty when the package writes no table or keeps them all in place.
pub(super) fn moved_by_package(
    package: &VerifiedPackage,
    writes: &[(&ProgramOp, &Target)],
    device: &DeviceInfo,
    labels: &[String],
) -> Result<Vec<String>, String> {
    let mut moved = Vec::new();
    for (op, target) in writes {
        let Target::Sectors {
            lun,
            start: 0,
            sector_size,
            ..
        } = **target
        else {
            continue;
        };
        let Some(table) = read_table(package, op, sector_size)? else {
            continue;
        };
        for label in labels {
            let Some(now) = device
                .layout
                .iter()
                .find(|p| p.lun == lun && &p.label == label)
            else {
                continue;
            };
            let was = format!(
                "LUN {lun} sectors {}..{}",
                now.start_sector,
                now.start_sector + now.sectors
            );
            match table.find(label) {
                None => moved.push(format!(
                    "{label} ({was}) is not in the partition table {} writes",
                    op.label
                )),
                Some(p) if p.first_lba != now.start_sector || p.sectors() != now.sectors => moved
                    .push(format!(
                        "{} moves {label} from {was} to sectors {}..{}",
                        op.label,
                        p.first_lba,
                        p.first_lba + p.sectors()
                    )),
                Some(_) => {}
            }
        }
    }
    Ok(moved)
}

/// The partition table an image written at sector 0 holds, if it holds one.
fn read_table(
    package: &VerifiedPackage,
    op: &ProgramOp,
    sector_size: u32,
) -> Result<Option<Gpt>, String> {
    let image = &package.manifest().images[op.image];
    if image.sparse.is_some() || op.file_sector_offset != 0 || image.size > MAX_TABLE_LEN {
        return Ok(None);
    }
    let mut reader = package.open_image(op.image).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(image.size as usize);
    (&mut reader)
        .take(MAX_TABLE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {}: {e}", image.file))?;
    reader.finish().map_err(|e| e.to_string())?;
    // An image at sector 0 that is no GPT (an MBR-only boot sector) moves nothing.
    Ok(Gpt::parse(sector_size, &bytes).ok())
}
