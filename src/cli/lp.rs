//! `flashline lp dump FILE`: what a super image or `super_empty.img` says about its
//! logical partitions, for people or as JSON.

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use crate::protocol::lp::{
    self, Container, Metadata, Target, BLOCK_DEVICE_SLOT_SUFFIXED, GROUP_SLOT_SUFFIXED,
    HEADER_FLAG_VIRTUAL_AB, PARTITION_ATTR_DISABLED, PARTITION_ATTR_READONLY,
    PARTITION_ATTR_SLOT_SUFFIXED, PARTITION_ATTR_UPDATED, SECTOR_SIZE,
};

#[derive(Subcommand)]
pub(super) enum LpCommand {
    /// Print the LP metadata of a super image, a super partition dump or a
    /// super_empty.img.
    Dump {
        /// The image.
        file: PathBuf,
        /// Metadata slot to read (a super_empty.img has only slot 0).
        #[arg(long, default_value_t = 0)]
        slot: u32,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(command: LpCommand) -> Result<ExitCode> {
    match command {
        LpCommand::Dump { file, slot, json } => {
            let (container, metadata) = read(&file, slot)?;
            if json {
                let dump = JsonDump {
                    container,
                    slot,
                    partition_sizes: metadata
                        .partitions
                        .iter()
                        .map(|p| metadata.partition_size(p))
                        .collect(),
                    metadata,
                };
                println!("{}", serde_json::to_string_pretty(&dump)?);
            } else {
                print!("{}", render(&file, container, slot, &metadata));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read(file: &Path, slot: u32) -> Result<(Container, Metadata)> {
    let f = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    lp::read_metadata(&mut BufReader::new(f), slot)
        .with_context(|| format!("cannot read LP metadata from {}", file.display()))
}

#[derive(Serialize)]
struct JsonDump {
    container: Container,
    slot: u32,
    metadata: Metadata,
    /// Bytes of each partition, in the order of `metadata.partitions`.
    partition_sizes: Vec<u64>,
}

/// Names the set bits of `value`, or "none".
fn flag_names(value: u32, known: &[(u32, &str)]) -> String {
    let mut names: Vec<String> = known
        .iter()
        .filter(|(bit, _)| value & bit != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    let unknown = known.iter().fold(value, |v, (bit, _)| v & !bit);
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    if names.is_empty() {
        "none".into()
    } else {
        names.join(",")
    }
}

fn render(file: &Path, container: Container, slot: u32, m: &Metadata) -> String {
    let g = &m.geometry;
    let mut s = String::new();
    let kind = match container {
        Container::SuperDevice => "super image",
        Container::EmptyImage => "super_empty image",
    };
    let _ = writeln!(s, "{} ({kind}), metadata slot {slot}", file.display());
    let _ = writeln!(
        s,
        "version 10.{}, header flags {}",
        m.minor_version,
        flag_names(m.flags, &[(HEADER_FLAG_VIRTUAL_AB, "virtual_ab")])
    );
    let _ = writeln!(
        s,
        "geometry: {} slots of at most {} bytes, logical block size {}",
        g.metadata_slot_count, g.metadata_max_size, g.logical_block_size
    );
    let _ = writeln!(s, "block devices:");
    for d in &m.block_devices {
        let _ = writeln!(
            s,
            "  {}: {} bytes, data from sector {}, alignment {} (offset {}), flags {}",
            d.partition_name,
            d.size,
            d.first_logical_sector,
            d.alignment,
            d.alignment_offset,
            flag_names(d.flags, &[(BLOCK_DEVICE_SLOT_SUFFIXED, "slot_suffixed")])
        );
    }
    let _ = writeln!(s, "groups:");
    for group in &m.groups {
        let limit = match group.maximum_size {
            0 => "no limit".to_string(),
            n => format!("at most {n} bytes"),
        };
        let _ = writeln!(
            s,
            "  {}: {limit}, flags {}",
            group.name,
            flag_names(group.flags, &[(GROUP_SLOT_SUFFIXED, "slot_suffixed")])
        );
    }
    let _ = writeln!(s, "partitions:");
    for p in &m.partitions {
        let _ = writeln!(
            s,
            "  {}: {} bytes in group {}, attributes {}",
            p.name,
            m.partition_size(p),
            m.group_name(p),
            flag_names(
                p.attributes,
                &[
                    (PARTITION_ATTR_READONLY, "readonly"),
                    (PARTITION_ATTR_SLOT_SUFFIXED, "slot_suffixed"),
                    (PARTITION_ATTR_UPDATED, "updated"),
                    (PARTITION_ATTR_DISABLED, "disabled"),
                ]
            )
        );
        let mut logical = 0u64;
        for e in m.extents_of(p) {
            let end = logical + e.num_sectors;
            let place = match e.target {
                Target::Linear {
                    block_device,
                    first_sector,
                } => {
                    let device = m
                        .block_devices
                        .get(block_device as usize)
                        .map_or("?", |d| d.partition_name.as_str());
                    format!(
                        "{device} sectors {first_sector}..{}",
                        first_sector + e.num_sectors
                    )
                }
                Target::Zero => "zeros".to_string(),
            };
            let _ = writeln!(
                s,
                "    sectors {logical}..{end} ({} bytes) -> {place}",
                e.num_sectors * SECTOR_SIZE
            );
            logical = end;
        }
    }
    s
}
