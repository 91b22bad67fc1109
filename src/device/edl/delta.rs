//! Delta writes: sending only the blocks the device does not already hold, checked
//! against the package's per-block hashes. Separate because it drives the digest loop.

use super::*;

impl<T: Transport> EdlDriver<T> {
    /// Writes a raw image whose package signs the hash of every block: asks the device
    /// for its digest of each block's sub-range first and sends only the blocks it does
    /// not hold yet; all-zero blocks are erased where erasing is seen to give zeros (see
    /// [`super::edl_delta`]). Each run sent is read through the image's checking reader (no
    /// block that differs from its signed hash leaves) and checked afterwards by the
    /// device's digest of the run.
    pub(super) fn write_by_blocks(
        &mut self,
        range: &SectorRange,
        target: &Target,
        image: &dyn ImageSource,
        blocks: BlockHashes,
        total: u64,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(), DeviceError> {
        let block = blocks.block() as u64;
        let sector = u64::from(range.sector_size);
        let len = image.len();
        let whole = (len / block) as usize;
        let count = blocks.hashes().len();
        let mut actions = vec![Action::Write; count];
        let zeros = zero_blocks(&blocks, len);
        let aligned = sector > 0 && block.is_multiple_of(sector);
        let why = if !aligned {
            format!("nothing skipped: blocks of {block} bytes are not whole sectors of {sector}")
        } else if self.no_digest {
            "nothing skipped: the programmer has no <getsha256digest> to compare blocks with"
                .to_string()
        } else {
            let part = |i: usize| sub_range(range, i as u64 * block, block);
            for i in 0..whole {
                match self.firehose()?.sha256_digest(&part(i)) {
                    Ok(digest) if digest == blocks.hashes()[i] => actions[i] = Action::Keep,
                    Ok(_) if zeros[i] && self.erase_gives_zeros => actions[i] = Action::Erase,
                    Ok(_) => {}
                    Err(FirehoseError::Nak { reason, .. }) => {
                        self.no_digest = true;
                        self.note(format!(
                            "the programmer refused <getsha256digest> ({reason}); every block \
                             is written and ranges are verified by reading them back"
                        ));
                        actions.fill(Action::Write);
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if self.no_digest {
                "nothing skipped: the programmer has no <getsha256digest> to compare blocks with"
                    .to_string()
            } else {
                format!(
                    "the device's SHA-256 of each {block}-byte block was compared with the \
                     signed one before writing"
                )
            }
        };
        let mut skipped = Skipped {
            chunk_bytes: block,
            why,
            ..Skipped::default()
        };
        let mut how = None;
        // The range past the image's blocks (if the last block is whole) must read as
        // zeros, as a full write would leave it.
        let blocks_end = (count as u64 * block).min(total);
        let runs = runs(&actions);
        let ends_in_write = runs.last().is_some_and(|r| r.0 == Action::Write);
        for (action, first, n) in runs {
            let start = first as u64 * block;
            let end = match first + n == count {
                true if ends_in_write => total,
                true => blocks_end,
                false => (first + n) as u64 * block,
            };
            let part = sub_range(range, start, end - start);
            match action {
                Action::Keep => skipped.equal_bytes += end - start,
                Action::Erase => {
                    how = Some(self.zero_run(&part, target, &mut skipped, progress)?)
                }
                Action::Write => {
                    let source = image
                        .send_reader_from(first)
                        .map_err(DeviceError::ImageRead)?;
                    let image_bytes = len.min(end) - start;
                    how = Some(self.program_run(
                        &part,
                        target,
                        Box::new(source),
                        image_bytes,
                        progress,
                        start,
                    )?);
                    skipped.written_bytes += end - start;
                }
            }
            progress(end.min(len));
        }
        if !ends_in_write && blocks_end < total {
            let part = sub_range(range, blocks_end, total - blocks_end);
            let held = !self.no_digest
                && self.firehose()?.sha256_digest(&part).ok()
                    == Some(zeros_sha256(total - blocks_end));
            if held {
                skipped.equal_bytes += total - blocks_end;
            } else {
                how = Some(self.zero_run(&part, target, &mut skipped, progress)?);
            }
        }
        if skipped.equal_bytes + skipped.erased_bytes > 0 {
            self.note(format!(
                "{target}: {} bytes already held, {} bytes erased, {} bytes written",
                skipped.equal_bytes, skipped.erased_bytes, skipped.written_bytes
            ));
        }
        self.skipped = Some(skipped);
        self.verified_by = how.or(Some(Verification::DeviceDigest));
        Ok(())
    }

    /// Makes `part` hold zeros: erased and checked by digest where erasing has been seen to
    /// give zeros (and the programmer can hash), written with zeros otherwise.
    fn zero_run(
        &mut self,
        part: &SectorRange,
        target: &Target,
        skipped: &mut Skipped,
        progress: &mut ProgressFn<'_>,
    ) -> Result<Verification, DeviceError> {
        let len = part.byte_len().unwrap_or(0);
        if self.erase_gives_zeros && !self.no_digest {
            self.firehose()?.erase(part)?;
            let (digest, by) = self.device_sha256(part)?;
            if digest == zeros_sha256(len) {
                skipped.erased_bytes += len;
                return Ok(by);
            }
            self.erase_gives_zeros = false;
            self.note(format!(
                "{target}: erased sectors do not read back as zeros on this storage; zeros are \
                 written instead"
            ));
        }
        skipped.written_bytes += len;
        self.program_run(part, target, Box::new(io::repeat(0)), 0, progress, 0)
    }

    /// Programs `part` with `image_bytes` bytes of `source` followed by zeros, hashing
    /// what is sent, then checks the device's digest of `part`.
    fn program_run(
        &mut self,
        part: &SectorRange,
        target: &Target,
        source: Box<dyn Read + Send + '_>,
        image_bytes: u64,
        progress: &mut ProgressFn<'_>,
        offset: u64,
    ) -> Result<Verification, DeviceError> {
        let total = part.byte_len().unwrap_or(0);
        // Read and checked on this thread: a Firehose link moves tens of MB/s, far below
        // what one core hashes, so hashing does not hold the sender back, and a read-ahead
        // thread would read (and send) megabytes past a cancel.
        let mut bytes = run_bytes(source, image_bytes, total);
        let result = self
            .firehose()?
            .program(part, &mut bytes, &mut |n| progress(offset + n));
        let sent = bytes.finish();
        match result {
            Ok(()) => {}
            Err(FirehoseError::SourceStopped {
                supplied, cause, ..
            }) => {
                return Err(DeviceError::WrittenButDiffers(format!(
                    "{target}: the image could not be sent past byte {} ({cause}); the rest \
                     of sectors {}..{} was filled with zeros",
                    offset + supplied,
                    part.start_sector,
                    part.start_sector + part.num_sectors
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let (device, how) = self.device_sha256(part)?;
        if device != sent {
            return Err(DeviceError::WrittenButDiffers(format!(
                "after writing sectors {}..{} of {target} the device's SHA-256 ({how}) differs \
                 from the bytes sent",
                part.start_sector,
                part.start_sector + part.num_sectors
            )));
        }
        Ok(how)
    }
}
