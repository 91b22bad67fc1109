//! Writing Android sparse images chunk by chunk, as qdl does. Separate from raw and
//! delta writes because it walks the sparse layout instead of the image's blocks.

use super::*;

impl<T: Transport> EdlDriver<T> {
    /// Writes an Android sparse image as qdl does: each RAW chunk's data to the target's
    /// start plus the chunk's offset, each FILL chunk expanded, DONT_CARE runs left alone.
    /// Every chunk is its own `<program>`, checked afterwards like a whole image; every
    /// block sent is one that matched its signed hash.
    ///
    /// With signed block hashes each byte is hashed once: the chunk list is planned from
    /// unchecked bytes, and the bytes that decided it (headers, FILL patterns) are
    /// compared with the planned ones on the checked send pass, each before the
    /// `<program>` that relies on it. An image of an older package is checked against
    /// its signature first, keeping a hash per block for the pass that sends it.
    pub(super) fn write_sparse(
        &mut self,
        range: &SectorRange,
        target: &Target,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let (layout, second): (_, Box<dyn Read + Send + '_>) = match image.block_hashes() {
            Some(_) => {
                let planning = image.plan_reader().map_err(DeviceError::ImageRead)?;
                let (layout, structure) = sparse::scan_sparse_structure(planning)?;
                let second = sparse::StructureCheck::new(
                    image.send_reader().map_err(DeviceError::ImageRead)?,
                    structure,
                );
                (layout, Box::new(second))
            }
            None => {
                let mut first = BlockHasher::new(
                    image.send_reader().map_err(DeviceError::ImageRead)?,
                    BlockHashes::block_size(image.len()),
                );
                let layout = sparse::scan_sparse(&mut first)?;
                io::copy(&mut first, &mut io::sink()).map_err(DeviceError::ImageRead)?;
                let (checked, blocks) = first.finish();
                checked.verify().map_err(DeviceError::ImageChanged)?;
                let second = BlockVerifier::new(
                    image.plan_reader().map_err(DeviceError::ImageRead)?,
                    blocks,
                );
                (layout, Box::new(second))
            }
        };
        let sector = u64::from(range.sector_size);
        let block = u64::from(layout.blk_sz);
        let expanded = u64::from(layout.total_blks) * block;
        if sector == 0 || !block.is_multiple_of(sector) {
            return Err(DeviceError::Unsupported(
                "a sparse image whose block size is not a whole number of sectors",
            ));
        }
        if range.byte_len().is_none_or(|n| n < expanded) {
            return Err(DeviceError::TooLarge(format!(
                "the sparse image expands to {expanded} bytes and does not fit {target}"
            )));
        }
        let mut cursor = SourceCursor::new(second);
        let mut how = None;
        let mut done = 0u64;
        for chunk in &layout.chunks {
            // The records that place this chunk (and, for a FILL, its pattern) pass the
            // checks before it is programmed.
            let placed = match chunk.data {
                ChunkData::Raw { .. } => layout.records_before(chunk.start_block),
                ChunkData::Fill(_) => layout.records_before(chunk.start_block + chunk.blocks),
            };
            if cursor.position() < placed {
                cursor
                    .read_at(placed, &mut [])
                    .map_err(|e| DeviceError::ImageChanged(e.to_string()))?;
            }
            let len = u64::from(chunk.blocks) * block;
            let part = SectorRange {
                start_sector: range.start_sector + u64::from(chunk.start_block) * block / sector,
                num_sectors: len / sector,
                ..*range
            };
            let mut data = HashingReader::new(ChunkBytes {
                cursor: &mut cursor,
                data: chunk.data,
                at: 0,
                len,
            });
            match self
                .firehose()?
                .program(&part, &mut data, &mut |n| progress(done + n))
            {
                Ok(()) => {}
                Err(FirehoseError::SourceStopped { cause, .. }) => {
                    return Err(DeviceError::WrittenButDiffers(format!(
                        "{target}: a chunk of the sparse image could not be sent ({cause}); the \
                         rest of its range was filled with zeros"
                    )))
                }
                Err(e) => return Err(e.into()),
            }
            let sent = data.finish();
            let (device, by) = self.device_sha256(&part)?;
            if device != sent {
                return Err(DeviceError::WrittenButDiffers(format!(
                    "after writing sectors {}..{} of {target} the device's SHA-256 ({by}) differs \
                     from the bytes sent",
                    part.start_sector,
                    part.start_sector + part.num_sectors
                )));
            }
            how = Some(by);
            done += len;
        }
        // Whatever no chunk carried must still be the checked image.
        cursor.drain_to_end()?;
        self.verified_by = how;
        Ok(())
    }
}
