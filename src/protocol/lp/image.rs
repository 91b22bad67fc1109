//! LP metadata in files: reading a super device or a `super_empty.img`, writing a
//! `super_empty.img`, streaming a complete `super` image out of partition images, and
//! streaming a partition back out of a super image.
//!
//! Nothing here holds an image in memory: data moves through one fixed-size buffer.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::Serialize;

use super::codec::{parse_geometry, parse_metadata, serialize_geometry, serialize_metadata};
use super::{LpError, Metadata, Target, GEOMETRY_SIZE, RESERVED_BYTES, SECTOR_SIZE};
use crate::hashing::HashingReader;

const CHUNK: usize = 64 * 1024;

/// Which of the two containers the metadata was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// A super partition or full `super.img`: reserved bytes, geometry at 4096 and its
    /// backup, primary and backup copies of every slot.
    SuperDevice,
    /// A `super_empty.img`: geometry at 0 and one metadata copy.
    EmptyImage,
}

/// Reads up to `len` bytes at `offset`; fewer if the input ends first. `len` is always
/// bounded by the geometry caps, never taken from the input unchecked.
fn read_at<R: Read + Seek>(r: &mut R, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(len);
    r.take(len as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Reads metadata slot `slot` from either container, telling which one it found.
///
/// On a super device a damaged primary geometry or metadata copy falls back to its
/// backup, as devices do; the primary's error is reported if both are bad. A
/// `super_empty.img` holds a single copy, which is slot 0.
pub fn read_metadata<R: Read + Seek>(
    r: &mut R,
    slot: u32,
) -> Result<(Container, Metadata), LpError> {
    let head = read_at(r, 0, GEOMETRY_SIZE)?;
    let head_error = match parse_geometry(&head) {
        Ok(geometry) => {
            if slot != 0 {
                return Err(LpError::Slot { slot, count: 1 });
            }
            let bytes = read_at(r, GEOMETRY_SIZE as u64, geometry.metadata_max_size as usize)?;
            return Ok((Container::EmptyImage, parse_metadata(geometry, &bytes)?));
        }
        Err(e) => e,
    };
    let primary = read_at(r, RESERVED_BYTES, GEOMETRY_SIZE)?;
    if primary.is_empty() {
        // Too short to be a super device: say what is wrong with it as an empty image.
        return Err(head_error);
    }
    let geometry = match parse_geometry(&primary) {
        Ok(g) => g,
        Err(primary_error) => {
            let backup = read_at(r, RESERVED_BYTES + GEOMETRY_SIZE as u64, GEOMETRY_SIZE)?;
            parse_geometry(&backup).map_err(|_| primary_error)?
        }
    };
    if slot >= geometry.metadata_slot_count {
        return Err(LpError::Slot {
            slot,
            count: geometry.metadata_slot_count,
        });
    }
    let max = geometry.metadata_max_size as usize;
    let bytes = read_at(r, geometry.primary_metadata_offset(slot), max)?;
    match parse_metadata(geometry, &bytes) {
        Ok(m) => Ok((Container::SuperDevice, m)),
        Err(primary_error) => {
            let bytes = read_at(r, geometry.backup_metadata_offset(slot), max)?;
            parse_metadata(geometry, &bytes)
                .map(|m| (Container::SuperDevice, m))
                .map_err(|_| primary_error)
        }
    }
}

/// Writes `metadata` as a `super_empty.img`: the geometry block, then one metadata copy.
pub fn write_empty_image<W: Write>(metadata: &Metadata, out: &mut W) -> Result<(), LpError> {
    out.write_all(&serialize_geometry(&metadata.geometry)?)?;
    out.write_all(&serialize_metadata(metadata)?)?;
    Ok(())
}

fn write_zeros<W: Write>(out: &mut W, mut len: u64) -> io::Result<()> {
    static ZEROS: [u8; CHUNK] = [0; CHUNK];
    while len > 0 {
        let n = len.min(CHUNK as u64) as usize;
        out.write_all(&ZEROS[..n])?;
        len -= n as u64;
    }
    Ok(())
}

/// What went into one partition of a super image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WrittenPartition {
    pub name: String,
    /// Bytes taken from its image (the rest of the partition is zeros).
    pub image_bytes: u64,
    /// SHA-256 of exactly those bytes, as they were written.
    pub sha256: String,
}

/// A partition's image while it is being streamed into its extents.
struct Source<R> {
    name: String,
    reader: HashingReader<R>,
    taken: u64,
    /// The image ended; the rest of the partition is zeros.
    ended: bool,
    /// The next of its extents, in logical order, not yet filled.
    next_extent: usize,
}

impl<R: Read> Source<R> {
    /// Reads into `buf` until it is full or the image ends; returns the bytes read.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && !self.ended {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => self.ended = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.taken += filled as u64;
        Ok(filled)
    }

    /// Copies the next `len` bytes of the image to `out`, zero-padding past its end.
    fn copy<W: Write>(&mut self, out: &mut W, mut len: u64, buf: &mut [u8]) -> io::Result<()> {
        while len > 0 {
            let want = len.min(buf.len() as u64) as usize;
            let n = self.fill(&mut buf[..want])?;
            buf[n..want].fill(0);
            out.write_all(&buf[..want])?;
            len -= want as u64;
        }
        Ok(())
    }

    /// Consumes the next `len` bytes of the image, which must be zeros (a zero extent).
    fn skip_zeros(&mut self, mut len: u64, buf: &mut [u8]) -> Result<(), LpError> {
        while len > 0 && !self.ended {
            let want = len.min(buf.len() as u64) as usize;
            let n = self.fill(&mut buf[..want])?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(LpError::ZeroExtentData {
                    partition: self.name.clone(),
                });
            }
            len -= want as u64;
        }
        Ok(())
    }
}

/// Streams a complete super image to `out`: the metadata region (every slot holding
/// `metadata`, primary and backup), then each partition's image in its extents, zeros
/// everywhere else, up to the device size.
///
/// `images` gives partition images by name; partitions without one are zeros. An image
/// may be shorter than its partition (zero-padded) but not longer. Only the super
/// device itself is written: metadata spanning several block devices (retrofit devices)
/// is refused. On an error `out` holds a partial image.
pub fn write_super_image<R: Read, W: Write>(
    metadata: &Metadata,
    images: impl IntoIterator<Item = (String, R)>,
    out: &mut W,
) -> Result<Vec<WrittenPartition>, LpError> {
    let geometry = serialize_geometry(&metadata.geometry)?;
    let blob = serialize_metadata(metadata)?;
    if metadata.block_devices.len() != 1 {
        return Err(LpError::Unsupported(format!(
            "the metadata spans {} block devices; only a single super device can be written",
            metadata.block_devices.len()
        )));
    }
    let device = &metadata.block_devices[0];

    let mut sources: BTreeMap<usize, Source<R>> = BTreeMap::new();
    for (name, reader) in images {
        let index = metadata
            .partitions
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| LpError::NoSuchPartition(name.clone()))?;
        sources.insert(
            index,
            Source {
                name,
                reader: HashingReader::new(reader),
                taken: 0,
                ended: false,
                next_extent: 0,
            },
        );
    }

    // Linear extents in the order they lie on the device.
    let mut placed: Vec<(u64, usize, usize)> = Vec::new();
    for (p_index, p) in metadata.partitions.iter().enumerate() {
        for (e_index, e) in metadata.extents_of(p).iter().enumerate() {
            if let Target::Linear { first_sector, .. } = e.target {
                placed.push((first_sector * SECTOR_SIZE, p_index, e_index));
            }
        }
    }
    placed.sort_unstable();

    let mut position = 0u64;
    write_zeros(out, RESERVED_BYTES)?;
    write_metadata_copies(metadata, &geometry, &blob, out)?;
    position += metadata.geometry.metadata_region_size();

    let mut buf = vec![0u8; CHUNK];
    for (start, p_index, e_index) in placed {
        if start < position {
            return Err(LpError::ExtentInvalid {
                index: metadata.partitions[p_index].first_extent_index as usize + e_index,
                reason: "overlaps the metadata region or another extent".into(),
            });
        }
        write_zeros(out, start - position)?;
        let partition = &metadata.partitions[p_index];
        let extents = metadata.extents_of(partition);
        let len = extents[e_index].num_sectors * SECTOR_SIZE;
        match sources.get_mut(&p_index) {
            None => write_zeros(out, len)?,
            Some(source) => {
                // Zero extents logically before this one take their share of the image.
                while source.next_extent < e_index {
                    let skipped = extents[source.next_extent];
                    if skipped.target != Target::Zero {
                        return Err(LpError::Unsupported(format!(
                            "partition {:?} has extents out of device order; it cannot be streamed",
                            partition.name
                        )));
                    }
                    source.skip_zeros(skipped.num_sectors * SECTOR_SIZE, &mut buf)?;
                    source.next_extent += 1;
                }
                source.copy(out, len, &mut buf)?;
                source.next_extent += 1;
            }
        }
        position = start + len;
    }
    if position > device.size {
        return Err(LpError::Layout(format!(
            "extents end at byte {position}, past the {}-byte device",
            device.size
        )));
    }
    write_zeros(out, device.size - position)?;

    let mut written = Vec::with_capacity(sources.len());
    for (p_index, mut source) in sources {
        let partition = &metadata.partitions[p_index];
        let extents = metadata.extents_of(partition);
        for skipped in &extents[source.next_extent..] {
            source.skip_zeros(skipped.num_sectors * SECTOR_SIZE, &mut buf)?;
        }
        if source.fill(&mut buf[..1])? > 0 {
            return Err(LpError::ImageTooLarge {
                partition: source.name,
                size: metadata.partition_size(partition),
            });
        }
        written.push(WrittenPartition {
            name: source.name,
            image_bytes: source.taken,
            sha256: hex::encode(source.reader.finish()),
        });
    }
    out.flush()?;
    Ok(written)
}

/// Writes the two geometry blocks, then the primary and the backup copy of every slot,
/// each padded to `metadata_max_size`: the metadata region after the reserved bytes.
fn write_metadata_copies<W: Write>(
    metadata: &Metadata,
    geometry: &[u8],
    blob: &[u8],
    out: &mut W,
) -> io::Result<()> {
    out.write_all(geometry)?;
    out.write_all(geometry)?;
    let padding = u64::from(metadata.geometry.metadata_max_size) - blob.len() as u64;
    for _ in 0..2 * metadata.geometry.metadata_slot_count {
        out.write_all(blob)?;
        write_zeros(out, padding)?;
    }
    Ok(())
}

/// Writes `metadata` into every slot of an existing super device, in place: both
/// geometries and the primary and backup copy of every slot. Nothing from the first
/// logical sector on is touched, so the partitions' bytes stay where their extents say,
/// as when a device updates its partition table. Everything is serialized (and so
/// checked) before the first byte is written.
pub fn write_metadata_region<W: Write + Seek>(
    metadata: &Metadata,
    out: &mut W,
) -> Result<(), LpError> {
    let geometry = serialize_geometry(&metadata.geometry)?;
    let blob = serialize_metadata(metadata)?;
    out.seek(SeekFrom::Start(RESERVED_BYTES))?;
    write_metadata_copies(metadata, &geometry, &blob, out)?;
    out.flush()?;
    Ok(())
}

/// Streams partition `name` out of a super device (or full super image) to `out`, zero
/// extents as zeros. Returns the bytes written.
pub fn extract_partition<R: Read + Seek, W: Write>(
    super_image: &mut R,
    metadata: &Metadata,
    name: &str,
    out: &mut W,
) -> Result<u64, LpError> {
    let partition = metadata
        .partition(name)
        .ok_or_else(|| LpError::NoSuchPartition(name.to_string()))?;
    let mut total = 0;
    for extent in metadata.extents_of(partition) {
        let len = extent.num_sectors * SECTOR_SIZE;
        match extent.target {
            Target::Zero => write_zeros(out, len)?,
            Target::Linear {
                block_device: 0,
                first_sector,
            } => {
                super_image.seek(SeekFrom::Start(first_sector * SECTOR_SIZE))?;
                let copied = io::copy(&mut super_image.by_ref().take(len), out)?;
                if copied < len {
                    return Err(LpError::Truncated {
                        what: "partition data",
                        len: copied,
                    });
                }
            }
            Target::Linear { block_device, .. } => {
                return Err(LpError::Unsupported(format!(
                    "partition {name:?} lies on block device {block_device}, not in this image"
                )))
            }
        }
        total += len;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::lp::{PartitionSpec, SuperLayout};

    #[test]
    fn the_metadata_region_is_rewritten_in_place() {
        let mut layout = SuperLayout::new(4 * 1024 * 1024, 2);
        layout.partitions.push(PartitionSpec {
            name: "system_a".into(),
            group: "default".into(),
            size: 1024 * 1024,
            attributes: 0,
        });
        let old = layout.build().unwrap();
        let data = vec![0x5a; 1024 * 1024];
        let mut device = io::Cursor::new(Vec::new());
        write_super_image(&old, [("system_a".to_string(), &data[..])], &mut device).unwrap();

        layout.partitions[0].name = "system_b".into();
        let new = layout.build().unwrap();
        write_metadata_region(&new, &mut device).unwrap();
        let bytes = device.get_ref().clone();
        assert_eq!(bytes.len() as u64, 4 * 1024 * 1024, "no byte added");
        for slot in 0..2 {
            let (container, read) = read_metadata(&mut io::Cursor::new(&bytes), slot).unwrap();
            assert_eq!(container, Container::SuperDevice);
            assert_eq!(read, new);
        }
        // The backup copies were rewritten too: damage every primary and read again.
        let mut damaged = bytes.clone();
        for slot in 0..2 {
            damaged[new.geometry.primary_metadata_offset(slot) as usize] ^= 0xff;
        }
        let (_, read) = read_metadata(&mut io::Cursor::new(&damaged), 1).unwrap();
        assert_eq!(read, new);
        // The partition's bytes were left where they were.
        let mut out = Vec::new();
        extract_partition(&mut io::Cursor::new(&bytes), &new, "system_b", &mut out).unwrap();
        assert_eq!(out, data);
    }
}
