//! Google's "optimized super": when the host knows everything super will hold, it builds
//! the whole super image itself and the bootloader flashes it in one pass (sent in sparse
//! pieces that fit max-download-size, zero runs as FILL), instead of the trip to fastbootd
//! with `update-super`, a resize and a flash per logical partition.
//!
//! It is the default, as in Google's client (`--disable-super-optimization` turns it off).
//! Conditions, as AOSP fastboot's `should_flash_in_userspace`/`FlashSuperLayoutTask`
//! state them: the phone has A/B slots ("Cannot optimize flashing super on non-AB
//! device"); the package has `super_empty.img` and an image for every logical partition
//! of the slot written; the device is not a retrofit device (super lies on one physical
//! partition); no snapshot merge is pending; super's size on the device is the one
//! `super_empty.img` was made for. Otherwise fastbootd writes the logical partitions, and
//! the report's notes say which condition sent the job there.
//!
//! The image is never held: the LP image writer streams it through a pipe from a helper
//! thread, reading the package's hashing image readers (sparse ones expanded on their
//! way, each on a thread of its own), whose verdicts the send reader's `verify` returns.
//! The driver cuts the image into sparse pieces, its zero runs sent as FILL.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, PipeReader, PipeWriter, Read, Write};
use std::thread::JoinHandle;

use super::dynamic::SuperFacts;
use crate::device::{ImageSource, SendReader};
use crate::package::VerifiedPackage;
use crate::protocol::lp::builder::DEFAULT_GROUP;
use crate::protocol::lp::{
    self, GroupSpec, Metadata, PartitionSpec, SuperLayout, HEADER_FLAG_VIRTUAL_AB,
};
use crate::protocol::sparse::{self, RegionSink};

/// The journal step of the whole-super flash: an interrupted one is sent again whole.
pub(super) const STEP: &str = "flash super (whole image)";

/// A complete super image to build from the package.
pub(super) struct WholeSuper {
    /// The physical partition flashed (`super`).
    pub name: String,
    metadata: Metadata,
    /// The logical partitions with images: their name in the metadata and their index in
    /// the package.
    images: Vec<(String, usize)>,
}

/// The optimized path for the logical images `logical` (package index, target name), or
/// why the job goes through fastbootd instead.
pub(super) fn decide(
    package: &VerifiedPackage,
    layout: Option<&Metadata>,
    facts: Option<&SuperFacts>,
    slot: Option<&str>,
    logical: &[(usize, String)],
) -> Result<WholeSuper, String> {
    let layout = layout.ok_or("the package has no super_empty.img")?;
    let facts = facts.ok_or("super was not read in fastbootd")?;
    let slot = slot
        .ok_or("the phone has no A/B slots (Google's client optimizes super on A/B phones only)")?;
    if facts.is_retrofit() || layout.block_devices.len() != 1 {
        return Err("this is a retrofit device: super spans the slots' system partitions".into());
    }
    if let Some(status) = &facts.snapshot_pending {
        return Err(format!("a snapshot update is {status}"));
    }
    let device = &layout.block_devices[0];
    if facts.super_size != Some(device.size) {
        return Err(format!(
            "super is {} on the device, and super_empty.img is made for {} bytes",
            facts
                .super_size
                .map_or("of unknown size".into(), |s| format!("{s} bytes")),
            device.size
        ));
    }
    let images = package.manifest().images.as_slice();
    let sizes: BTreeMap<&str, u64> = logical
        .iter()
        .map(|(i, target)| (target.as_str(), images[*i].expanded_size()))
        .collect();
    let of_slot = |name: &str| name.ends_with(&format!("_{slot}"));
    if let Some(missing) = layout
        .partitions
        .iter()
        .find(|p| of_slot(&p.name) && !sizes.contains_key(p.name.as_str()))
    {
        return Err(format!("the package has no image for {}", missing.name));
    }
    if let Some(stray) = sizes.keys().find(|n| layout.partition(n).is_none()) {
        return Err(format!("super_empty.img has no partition {stray}"));
    }
    let metadata = sized(layout, &sizes).map_err(|e| format!("super cannot be laid out: {e}"))?;
    Ok(WholeSuper {
        name: facts.super_name.clone(),
        metadata,
        images: logical.iter().map(|(i, t)| (t.clone(), *i)).collect(),
    })
}

/// `layout` with the written partitions grown to their images' sizes (the others stay
/// empty, as the bootloader gets a fresh super).
fn sized(layout: &Metadata, sizes: &BTreeMap<&str, u64>) -> Result<Metadata, lp::LpError> {
    let device = &layout.block_devices[0];
    let mut fresh = SuperLayout::new(device.size, layout.geometry.metadata_slot_count);
    fresh.device_name = device.partition_name.clone();
    fresh.geometry = layout.geometry;
    if device.alignment != 0 {
        fresh.alignment = device.alignment;
    }
    fresh.virtual_ab = layout.flags & HEADER_FLAG_VIRTUAL_AB != 0;
    fresh.groups = layout
        .groups
        .iter()
        .filter(|g| g.name != DEFAULT_GROUP)
        .map(|g| GroupSpec {
            name: g.name.clone(),
            maximum_size: g.maximum_size,
        })
        .collect();
    fresh.partitions = layout
        .partitions
        .iter()
        .map(|p| PartitionSpec {
            name: p.name.clone(),
            group: layout.group_name(p).to_string(),
            size: sizes.get(p.name.as_str()).copied().unwrap_or(0),
            attributes: p.attributes,
        })
        .collect();
    fresh.build()
}

/// [`WholeSuper`] as the driver sends it.
pub(super) struct Source<'a> {
    pub package: &'a VerifiedPackage,
    pub whole: &'a WholeSuper,
}

impl ImageSource for Source<'_> {
    fn len(&self) -> u64 {
        self.whole.metadata.block_devices[0].size
    }

    fn is_sparse(&self) -> bool {
        false
    }

    /// Planning reads the package unhashed: the driver checks the second pass against
    /// the block hashes of the first, which went through [`Source::send_reader`].
    fn plan_reader(&self) -> io::Result<Box<dyn Read + Send + '_>> {
        let readers = self.open(|p, i| p.open_image_for_planning(i))?;
        Ok(Box::new(Piped::spawn(
            self.whole.metadata.clone(),
            readers,
            |_| Ok(()),
        )?))
    }

    fn send_reader(&self) -> io::Result<Box<dyn SendReader + '_>> {
        let readers = self.open(|p, i| p.open_image(i))?;
        Ok(Box::new(Piped::spawn(
            self.whole.metadata.clone(),
            readers,
            |r| r.finish().map(drop).map_err(|e| e.to_string()),
        )?))
    }
}

impl Source<'_> {
    fn open<R, E: std::fmt::Display>(
        &self,
        open: impl Fn(&VerifiedPackage, usize) -> Result<R, E>,
    ) -> io::Result<Vec<(String, R, bool)>> {
        let images = &self.package.manifest().images;
        self.whole
            .images
            .iter()
            .map(|(name, index)| {
                open(self.package, *index)
                    .map(|r| (name.clone(), r, images[*index].sparse.is_some()))
                    .map_err(|e| io::Error::other(e.to_string()))
            })
            .collect()
    }
}

/// The super image, written by [`lp::write_super_image`] on a helper thread into a pipe.
struct Piped {
    pipe: Option<PipeReader>,
    writer: Option<JoinHandle<Result<(), String>>>,
}

impl Piped {
    /// `readers`: each logical partition's name, its package reader and whether that is
    /// a sparse image; each is fed to the super writer expanded, through a pipe of its own.
    fn spawn<R: Read + Send + 'static>(
        metadata: Metadata,
        readers: Vec<(String, R, bool)>,
        finish: fn(R) -> Result<(), String>,
    ) -> io::Result<Self> {
        let mut feeds = Vec::with_capacity(readers.len());
        let mut streams = Vec::with_capacity(readers.len());
        for (name, reader, sparse) in readers {
            let (stream, out) = io::pipe()?;
            feeds.push(std::thread::spawn(move || feed(reader, sparse, out)));
            streams.push((name, stream));
        }
        let (pipe, out) = io::pipe()?;
        let writer = std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(64 * 1024, out);
            let written = lp::write_super_image(&metadata, streams, &mut out);
            drop(out);
            // Every feed ends: its pipe's reader is gone once the writer returned.
            let mut verdict = written.map(drop).map_err(|e| e.to_string());
            for handle in feeds {
                let (reader, fed) = handle
                    .join()
                    .map_err(|_| "a logical image's reader panicked".to_string())?;
                verdict = verdict.and(fed).and_then(|()| finish(reader));
            }
            verdict
        });
        Ok(Piped {
            pipe: Some(pipe),
            writer: Some(writer),
        })
    }
}

/// Copies one logical image into `out`, a sparse one expanded (DONT_CARE as zeros), then
/// reads its reader to the end so that it can prove every byte was the signed one.
fn feed<R: Read>(mut reader: R, sparse: bool, out: PipeWriter) -> (R, Result<(), String>) {
    let mut out = BufWriter::with_capacity(64 * 1024, out);
    let fed = if sparse {
        sparse::expand(&mut reader, &mut Expanded(&mut out))
            .map(drop)
            .map_err(|e| e.to_string())
    } else {
        io::copy(&mut reader, &mut out)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    let fed = fed
        .and_then(|()| out.flush().map_err(|e| e.to_string()))
        .and_then(|()| {
            io::copy(&mut reader, &mut io::sink())
                .map(drop)
                .map_err(|e| e.to_string())
        });
    (reader, fed)
}

/// A sparse image's regions written out in order, as a raw image.
struct Expanded<'w, W>(&'w mut W);

impl<W: Write> Expanded<'_, W> {
    fn repeat(&mut self, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        let block: Vec<u8> = pattern.iter().copied().cycle().take(64 * 1024).collect();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            self.0.write_all(&block[..n])?;
            left -= n as u64;
        }
        Ok(())
    }
}

impl<W: Write> RegionSink for Expanded<'_, W> {
    fn begin(&mut self, _: &sparse::Header) -> io::Result<()> {
        Ok(())
    }
    fn data(&mut self, _: u64, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }
    fn fill(&mut self, _: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        self.repeat(len, pattern)
    }
    fn skip(&mut self, _: u64, len: u64) -> io::Result<()> {
        self.repeat(len, [0; 4])
    }
}

impl Read for Piped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.pipe {
            Some(pipe) => pipe.read(buf),
            None => Ok(0),
        }
    }
}

impl SendReader for Piped {
    fn verify(mut self: Box<Self>) -> Result<(), String> {
        // Closing the pipe ends a writer that was not read to its end.
        drop(self.pipe.take());
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(verdict)) => verdict,
            Some(Err(_)) => Err("the super image writer panicked".into()),
            None => Ok(()),
        }
    }
}
