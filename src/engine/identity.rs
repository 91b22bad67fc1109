//! The identity partitions (modemst1, modemst2, fsg, fsc, persist: IMEI, calibration,
//! network settings) stay with the device, wherever its partition table puts them.
//!
//! A flat build may carry its own partition table (`gpt_main0.bin`, written at sector 0).
//! If that table puts an identity partition somewhere else, the device's irreplaceable
//! bytes would be left behind in what the new table calls another partition. flashline
//! then moves them itself: the backed-up bytes are written into the new range before the
//! new table, and the table before anything else, so a job interrupted at any point
//! leaves a device whose current table points at its identity data (a rerun backs up and
//! moves again, or finds nothing to move). A table that resizes or drops an identity
//! partition, or a package that writes into one's new range, is refused before anything
//! is written.

use std::io::Read;

use crate::device::{DeviceInfo, Target};
use crate::package::qualcomm::ProgramOp;
use crate::package::VerifiedPackage;
use crate::protocol::gpt::Gpt;

/// Largest image read as a partition table: a GPT with 128 entries is 34 sectors of 512
/// bytes or 6 of 4096.
const MAX_TABLE_LEN: u64 = 1024 * 1024;

/// An identity partition the package's table moves, and where its bytes must go.
#[derive(Debug, Clone)]
pub(super) struct Relocation {
    /// The partition label.
    pub label: String,
    /// Its range under the package's table (same LUN, same size).
    pub target: Target,
    /// The write (index into the job's writes) that puts the new table on the device.
    pub table: usize,
}

/// The identity partitions the package's own partition table moves, each with its new
/// range; `Err` with the reasons when a move cannot be carried out safely. `others` are
/// the job's erases and patches, which must stay out of the new ranges too.
pub(super) fn relocations(
    package: &VerifiedPackage,
    writes: &[(&ProgramOp, Option<&Target>)],
    others: &[(&str, Option<&Target>)],
    device: &DeviceInfo,
    labels: &[String],
) -> Result<Vec<Relocation>, String> {
    let mut moves = Vec::new();
    let mut refusals = Vec::new();
    for (index, (op, target)) in writes.iter().enumerate() {
        let Some(&Target::Sectors {
            lun,
            start: 0,
            sector_size,
            ..
        }) = *target
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
            let Some(new) = table.find(label) else {
                refusals.push(format!(
                    "{label} ({was}) is not in the partition table {} writes",
                    op.label
                ));
                continue;
            };
            if new.first_lba == now.start_sector && new.sectors() == now.sectors {
                continue;
            }
            if new.sectors() != now.sectors {
                refusals.push(format!(
                    "{} resizes {label} from {} to {} sectors",
                    op.label,
                    now.sectors,
                    new.sectors()
                ));
                continue;
            }
            let target = Target::Sectors {
                lun,
                start: new.first_lba,
                count: now.sectors,
                sector_size,
            };
            let clash = writes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != index)
                .filter_map(|(_, (op, t))| Some((op.label.as_str(), (*t)?)))
                .chain(others.iter().filter_map(|(what, t)| Some((*what, (*t)?))))
                .find(|(_, t)| overlaps(t, &target));
            if let Some((what, _)) = clash {
                refusals.push(format!(
                    "{} moves {label} to {target}, which {what} also writes",
                    op.label
                ));
                continue;
            }
            moves.push(Relocation {
                label: label.clone(),
                target,
                table: index,
            });
        }
    }
    if refusals.is_empty() {
        Ok(moves)
    } else {
        Err(refusals.join("; "))
    }
}

/// Whether two sector ranges share a sector.
fn overlaps(a: &Target, b: &Target) -> bool {
    match (a, b) {
        (
            Target::Sectors {
                lun: la,
                start: sa,
                count: ca,
                sector_size: za,
            },
            Target::Sectors {
                lun: lb,
                start: sb,
                count: cb,
                sector_size: zb,
            },
        ) => {
            let bytes = |start: &u64, count: &u64, size: &u32| {
                let size = u64::from(*size);
                (
                    start.saturating_mul(size),
                    start.saturating_add(*count).saturating_mul(size),
                )
            };
            let (a0, a1) = bytes(sa, ca, za);
            let (b0, b1) = bytes(sb, cb, zb);
            la == lb && a0 < b1 && b0 < a1
        }
        _ => false,
    }
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
