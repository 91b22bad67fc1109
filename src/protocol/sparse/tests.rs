//! Unit tests for the whole sparse module: scanning, splitting and writing share fixtures
//! (noise images, a device-like sink), so they live together.

use std::io::{self, Read};
use std::ops::Range;

use super::*;

const BLK: usize = RAW_BLOCK_SIZE as usize;
const MIB: usize = 1 << 20;

/// Deterministic noise (xorshift64), so failures reproduce.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn pattern_block(word: [u8; 4]) -> Vec<u8> {
    word.repeat(BLK / 4)
}

/// Writes a device would do with a piece: data and fills land, DONT_CARE is untouched.
struct Apply<'a>(&'a mut [u8]);

impl RegionSink for Apply<'_> {
    fn begin(&mut self, header: &Header) -> io::Result<()> {
        assert_eq!(
            header.expanded_len(),
            self.0.len() as u64,
            "piece covers the whole image"
        );
        assert_eq!(header.image_checksum, 0);
        Ok(())
    }
    fn data(&mut self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.0[offset as usize..][..bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
    fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> io::Result<()> {
        for word in self.0[offset as usize..][..len as usize].chunks_mut(4) {
            word.copy_from_slice(&pattern);
        }
        Ok(())
    }
    fn skip(&mut self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// Counts what the cursor pulls from the source.
struct Counted<'a> {
    data: &'a [u8],
    read: u64,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes every piece in order, checking announced lengths and that the source is read
/// exactly once.
fn write_pieces(layout: &Layout, pieces: &[Piece], source: &[u8]) -> Vec<Vec<u8>> {
    let mut src = SourceCursor::new(Counted {
        data: source,
        read: 0,
    });
    let mut scratch = vec![0u8; 3000]; // deliberately not a block multiple
    let files: Vec<Vec<u8>> = pieces
        .iter()
        .map(|piece| {
            let mut out = Vec::new();
            piece
                .write(layout, &mut src, &mut out, &mut scratch)
                .unwrap();
            assert_eq!(out.len() as u64, piece.encoded_len());
            out
        })
        .collect();
    assert_eq!(src.drain_to_end().unwrap(), source.len() as u64);
    assert_eq!(src.into_inner().read, source.len() as u64);
    files
}

/// Applies all pieces over a zeroed partition.
fn apply(files: &[Vec<u8>], expanded_len: usize) -> Vec<u8> {
    let mut partition = vec![0u8; expanded_len];
    for file in files {
        expand(&file[..], &mut Apply(&mut partition)).unwrap();
    }
    partition
}

/// (type, chunk_sz) of every chunk in a sparse file.
fn chunk_list(file: &[u8]) -> Vec<(u16, u32)> {
    let mut out = Vec::new();
    let mut at = FILE_HEADER_LEN;
    while at < file.len() {
        let kind = u16::from_le_bytes([file[at], file[at + 1]]);
        out.push((kind, le_u32(file, at + 4)));
        at += le_u32(file, at + 8) as usize;
    }
    assert_eq!(out.len() as u32, le_u32(file, 20), "total_chunks matches");
    out
}

fn raw(start_block: u32, blocks: u32, source_offset: u64) -> Chunk {
    Chunk {
        start_block,
        blocks,
        data: ChunkData::Raw { source_offset },
    }
}

fn fill(start_block: u32, blocks: u32, value: u32) -> Chunk {
    Chunk {
        start_block,
        blocks,
        data: ChunkData::Fill(value),
    }
}

/// A layout over `total_blks` blocks whose RAW chunks read the source at block offsets.
fn layout(total_blks: u32, chunks: Vec<Chunk>) -> Layout {
    Layout {
        blk_sz: RAW_BLOCK_SIZE,
        total_blks,
        source_len: u64::from(total_blks) * BLK as u64,
        chunks,
    }
}

fn block_ranges(pieces: &[Piece]) -> Vec<Range<u32>> {
    pieces.iter().map(|p| p.start_block..p.end_block).collect()
}

#[test]
fn scan_raw_finds_fill_blocks_and_merges_runs() {
    let p = [1, 2, 3, 4];
    let mut image = Vec::new();
    image.extend(vec![0u8; 2 * BLK]);
    image.extend(pattern_block(p));
    image.extend(noise(2 * BLK, 1));
    image.extend(pattern_block(p));
    image.extend(pattern_block([9, 9, 9, 8]));
    image.extend(vec![0u8; BLK + 100]); // whole zero block, then a partial one
    let layout = scan_raw(&image[..], image.len() as u64).unwrap();
    assert_eq!(layout.blk_sz, 4096);
    assert_eq!(layout.total_blks, 9);
    assert_eq!(layout.source_len, image.len() as u64);
    assert_eq!(
        layout.chunks,
        vec![
            fill(0, 2, 0),
            fill(2, 1, 0x0403_0201),
            raw(3, 2, 3 * BLK as u64),
            fill(5, 1, 0x0403_0201),
            fill(6, 1, 0x0809_0909),
            fill(7, 1, 0),
            // libsparse never turns a partial block into FILL, even all zeros.
            raw(8, 1, 8 * BLK as u64),
        ]
    );
}

#[test]
fn scan_raw_reads_exactly_len_bytes() {
    let image = noise(3 * BLK + 10, 2);
    let mut src = io::Cursor::new(&image);
    let layout = scan_raw(&mut src, 2 * BLK as u64).unwrap();
    assert_eq!(src.position(), 2 * BLK as u64);
    assert_eq!(layout.chunks, vec![raw(0, 2, 0)]);

    let err = scan_raw(&image[..], image.len() as u64 + 1).unwrap_err();
    assert!(matches!(err, SparseError::SourceEnded { needed } if needed == image.len() as u64 + 1));
}

#[test]
fn scan_raw_of_empty_image() {
    let layout = scan_raw(&[][..], 0).unwrap();
    assert_eq!((layout.total_blks, layout.chunks.len()), (0, 0));
    let pieces = split(&layout, MIB as u64).unwrap();
    let files = write_pieces(&layout, &pieces, &[]);
    assert_eq!(files, vec![Header::encode(4096, 0, 0).to_vec()]);
}

/// protocols.md §1.6: what Google's client sent for 3 MiB noise + 2 MiB zeros at 1 MiB.
#[test]
fn split_matches_the_observed_fastboot_pieces() {
    let mut image = noise(3 * MIB, 3);
    image.extend(vec![0u8; 2 * MIB]);
    let layout = scan_raw(&image[..], image.len() as u64).unwrap();
    let pieces = split(&layout, MIB as u64).unwrap();
    let lens: Vec<u64> = pieces.iter().map(Piece::encoded_len).collect();
    assert_eq!(lens, vec![0xff034, 0xff040, 0xff040, 0x3044]);
    let files = write_pieces(&layout, &pieces, &image);
    let lists: Vec<_> = files.iter().map(|f| chunk_list(f)).collect();
    assert_eq!(
        lists,
        vec![
            vec![(CHUNK_RAW, 255), (CHUNK_DONT_CARE, 1025)],
            vec![
                (CHUNK_DONT_CARE, 255),
                (CHUNK_RAW, 255),
                (CHUNK_DONT_CARE, 770)
            ],
            vec![
                (CHUNK_DONT_CARE, 510),
                (CHUNK_RAW, 255),
                (CHUNK_DONT_CARE, 515)
            ],
            vec![(CHUNK_DONT_CARE, 765), (CHUNK_RAW, 3), (CHUNK_FILL, 512)],
        ]
    );
    assert_eq!(apply(&files, image.len()), image);
}

#[test]
fn a_chunk_that_exactly_fits_stays_whole() {
    let layout = layout(10, vec![raw(0, 10, 0)]);
    let exact = PIECE_RESERVE + 12 + 10 * BLK as u64;
    let pieces = split(&layout, exact).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..10]);
    assert_eq!(pieces[0].encoded_len(), 28 + 12 + 10 * BLK as u64);

    let pieces = split(&layout, exact - 1).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..9, 9..10]);
    let image = noise(10 * BLK, 4);
    assert_eq!(
        apply(&write_pieces(&layout, &pieces, &image), image.len()),
        image
    );
}

#[test]
fn the_next_chunk_is_cut_only_when_more_than_an_eighth_is_left() {
    // 11 RAW blocks, a one-block gap, then 5 RAW blocks. After the first chunk
    // (12 + 11 blocks) and the second's header plus gap header (24), a budget of 51520
    // leaves exactly budget/8 = 6440 bytes: not enough to cut, the piece closes.
    let layout = layout(17, vec![raw(0, 11, 0), raw(12, 5, 12 * BLK as u64)]);
    let budget = 51_520;
    let pieces = split(&layout, PIECE_RESERVE + budget).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..11, 12..17]);
    // Eight bytes more leave 6448 > 6441: one block of the second chunk is cut off.
    let pieces = split(&layout, PIECE_RESERVE + budget + 8).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..13, 13..17]);
    let image = noise(17 * BLK, 5);
    let mut expected = image.clone();
    expected[11 * BLK..12 * BLK].fill(0); // the gap is DONT_CARE
    for pieces in [
        &pieces[..],
        &split(&layout, PIECE_RESERVE + budget).unwrap()[..],
    ] {
        let files = write_pieces(&layout, pieces, &image);
        for (file, piece) in files.iter().zip(pieces) {
            assert!(file.len() as u64 <= PIECE_RESERVE + budget + 8);
            assert_eq!(file.len() as u64, piece.encoded_len());
        }
        assert_eq!(apply(&files, image.len()), expected);
    }
}

#[test]
fn a_cut_that_takes_the_last_chunk_whole_still_ends_the_piece() {
    // The gap header makes the chunk "not fit" by up to 12 bytes although its blocks
    // do; libsparse then takes it whole and still emits one more, empty, piece.
    let layout = layout(4, vec![raw(1, 3, BLK as u64)]);
    let limit = PIECE_RESERVE + 12 + 3 * BLK as u64 + 11;
    let pieces = split(&layout, limit).unwrap();
    assert_eq!(block_ranges(&pieces), vec![1..4, 0..0]);
    let image = noise(4 * BLK, 6);
    let files = write_pieces(&layout, &pieces, &image);
    assert_eq!(
        chunk_list(&files[0]),
        vec![(CHUNK_DONT_CARE, 1), (CHUNK_RAW, 3)]
    );
    assert_eq!(chunk_list(&files[1]), vec![(CHUNK_DONT_CARE, 4)]);
}

#[test]
fn fill_chunks_cost_sixteen_bytes() {
    // Three chunks: RAW 1, FILL 1000 blocks, RAW 1. Budget for RAW + FILL exactly.
    let layout = layout(
        1002,
        vec![
            raw(0, 1, 0),
            fill(1, 1000, 7),
            raw(1001, 1, 1001 * BLK as u64),
        ],
    );
    let budget = (12 + BLK as u64) + 16;
    let pieces = split(&layout, PIECE_RESERVE + budget).unwrap();
    assert_eq!(pieces[0].end_block, 1001);
    assert_eq!(pieces[0].encoded_len(), 28 + 12 + BLK as u64 + 16 + 12);
}

#[test]
fn limits_that_cannot_carry_a_block_are_rejected() {
    let layout = layout(4, vec![raw(0, 4, 0)]);
    let minimum = PIECE_RESERVE + 12 + BLK as u64;
    let err = split(&layout, minimum - 1).unwrap_err();
    assert!(
        matches!(err, SparseError::PieceLimitTooSmall { limit, minimum: m } if limit == minimum - 1 && m == minimum)
    );
    let pieces = split(&layout, minimum).unwrap();
    // The last block "does not fit" by its gap header, so a last empty piece follows.
    assert_eq!(block_ranges(&pieces), vec![0..1, 1..2, 2..3, 3..4, 0..0]);
    assert!(pieces.iter().all(|p| p.encoded_len() <= minimum));
    let err = split(&layout, u64::from(u32::MAX) + 1).unwrap_err();
    assert!(matches!(err, SparseError::PieceLimitTooLarge(_)));
}

#[test]
fn malformed_layouts_are_rejected() {
    let overlapping = layout(8, vec![raw(0, 4, 0), raw(3, 2, 0)]);
    let past_end = layout(8, vec![raw(6, 4, 0)]);
    let empty_chunk = layout(8, vec![raw(0, 0, 0)]);
    for bad in [overlapping, past_end, empty_chunk] {
        assert!(matches!(
            split(&bad, MIB as u64),
            Err(SparseError::InvalidLayout { .. })
        ));
    }
}

/// A sparse file with leading and inner DONT_CARE, mergeable FILLs, adjacent RAW
/// chunks and a CRC32 chunk.
fn handmade_sparse(data: &[u8]) -> Vec<u8> {
    let mut file = Header::encode(4096, 20, 9).to_vec();
    let mut chunk = |kind: u16, blocks: u32, payload: &[u8]| {
        write_chunk_header(&mut file, kind, blocks, payload.len() as u64).unwrap();
        file.extend_from_slice(payload);
    };
    chunk(CHUNK_DONT_CARE, 2, &[]);
    chunk(CHUNK_RAW, 3, &data[..3 * BLK]);
    chunk(CHUNK_FILL, 2, &0xdead_beef_u32.to_le_bytes());
    chunk(CHUNK_FILL, 1, &0xdead_beef_u32.to_le_bytes());
    chunk(CHUNK_DONT_CARE, 4, &[]);
    chunk(CHUNK_CRC32, 0, &[1, 2, 3, 4]);
    chunk(CHUNK_RAW, 1, &data[3 * BLK..4 * BLK]);
    chunk(CHUNK_RAW, 2, &data[4 * BLK..6 * BLK]);
    chunk(CHUNK_FILL, 5, &[0; 4]);
    file
}

#[test]
fn scan_sparse_keeps_gaps_and_merges_like_libsparse() {
    let data = noise(6 * BLK, 7);
    let file = handmade_sparse(&data);
    let layout = scan_sparse(&file[..]).unwrap();
    let first_raw = (28 + 12 + 12) as u64;
    let second_raw = first_raw + 3 * BLK as u64 + 16 + 16 + 12 + 16 + 12;
    assert_eq!(layout.total_blks, 20);
    assert_eq!(layout.source_len, file.len() as u64);
    assert_eq!(
        layout.chunks,
        vec![
            raw(2, 3, first_raw),
            fill(5, 3, 0xdead_beef),
            raw(12, 1, second_raw),
            raw(13, 2, second_raw + BLK as u64 + 12),
            fill(15, 5, 0),
        ]
    );

    let mut whole = vec![0u8; 20 * BLK];
    expand(&file[..], &mut Apply(&mut whole)).unwrap();
    for limit in [
        PIECE_RESERVE + 12 + BLK as u64,
        3 * BLK as u64,
        5 * BLK as u64,
        MIB as u64,
    ] {
        let pieces = split(&layout, limit).unwrap();
        let files = write_pieces(&layout, &pieces, &file);
        assert!(files.iter().all(|f| f.len() as u64 <= limit));
        assert_eq!(apply(&files, whole.len()), whole, "limit {limit}");
    }
}

#[test]
fn scan_sparse_rejects_what_expand_rejects() {
    let data = noise(6 * BLK, 8);
    let mut file = handmade_sparse(&data);
    file[16] = 21; // total_blks one more than the chunks cover
    assert!(matches!(
        scan_sparse(&file[..]),
        Err(SparseError::BlockCountMismatch { .. })
    ));
    let file = handmade_sparse(&data);
    assert!(matches!(
        scan_sparse(&file[..file.len() - 1]),
        Err(SparseError::Truncated)
    ));
}

#[test]
fn random_layouts_split_within_the_limit_and_reproduce_the_image() {
    let mut seed = 0x5eed_u64;
    for round in 0..40 {
        let choices = noise(64, seed);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(round);
        let mut chunks = Vec::new();
        let mut block = 0u32;
        for pair in choices.chunks(2) {
            let blocks = 1 + u32::from(pair[0] % 40);
            block += u32::from(pair[1] % 3); // sometimes a gap
            chunks.push(match pair[1] % 4 {
                0 => fill(block, blocks, u32::from(pair[0])),
                _ => raw(block, blocks, u64::from(block) * BLK as u64),
            });
            block += blocks;
        }
        let layout = layout(block + 2, chunks);
        let image = noise((block as usize + 2) * BLK, seed | 1);
        let mut expected = vec![0u8; image.len()];
        for chunk in &layout.chunks {
            let range =
                chunk.start_block as usize * BLK..(chunk.start_block + chunk.blocks) as usize * BLK;
            match chunk.data {
                ChunkData::Raw { .. } => expected[range.clone()].copy_from_slice(&image[range]),
                ChunkData::Fill(v) => expected[range]
                    .chunks_mut(4)
                    .for_each(|w| w.copy_from_slice(&v.to_le_bytes())),
            }
        }
        let limit = PIECE_RESERVE + 12 + BLK as u64 + u64::from(choices[0]) * 997;
        let pieces = split(&layout, limit).unwrap();
        let files = write_pieces(&layout, &pieces, &image);
        assert!(
            files.iter().all(|f| f.len() as u64 <= limit),
            "round {round}"
        );
        assert_eq!(apply(&files, image.len()), expected, "round {round}");
    }
}

#[test]
fn the_cursor_never_goes_back() {
    let data = noise(100, 9);
    let mut src = SourceCursor::new(&data[..]);
    let mut buf = [0u8; 10];
    src.read_at(20, &mut buf).unwrap();
    assert_eq!(buf, data[20..30]);
    assert_eq!(src.position(), 30);
    assert!(matches!(
        src.read_at(25, &mut buf),
        Err(SparseError::SourceOrder {
            requested: 25,
            position: 30
        })
    ));
    assert!(matches!(
        src.read_at(95, &mut buf),
        Err(SparseError::SourceEnded { needed: 105 })
    ));
}

#[test]
fn pieces_are_written_once_in_order_from_their_own_layout() {
    let image = noise(8 * BLK, 10);
    let layout = scan_raw(&image[..], image.len() as u64).unwrap();
    let pieces = split(&layout, PIECE_RESERVE + 24 + 4 * BLK as u64).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..4, 4..8]);
    let mut scratch = [0u8; 512];
    let mut src = SourceCursor::new(&image[..]);
    let mut sink = io::sink();
    pieces[1]
        .write(&layout, &mut src, &mut sink, &mut scratch)
        .unwrap();
    assert!(matches!(
        pieces[0].write(&layout, &mut src, &mut sink, &mut scratch),
        Err(SparseError::SourceOrder { .. })
    ));

    let other = scan_raw(&image[..BLK], BLK as u64).unwrap();
    let mut src = SourceCursor::new(&image[..]);
    assert!(matches!(
        pieces[1].write(&other, &mut src, &mut sink, &mut scratch),
        Err(SparseError::PieceLayoutMismatch)
    ));
    assert!(matches!(
        pieces[0].write(&layout, &mut src, &mut sink, &mut []),
        Err(SparseError::EmptyScratch)
    ));
}

#[test]
fn a_partial_last_block_is_padded_with_zeros() {
    let image = noise(3 * BLK + 5, 11);
    let layout = scan_raw(&image[..], image.len() as u64).unwrap();
    let pieces = split(&layout, PIECE_RESERVE + 12 + 2 * BLK as u64 + 12).unwrap();
    assert_eq!(block_ranges(&pieces), vec![0..2, 2..4]);
    let files = write_pieces(&layout, &pieces, &image);
    let mut expected = image.clone();
    expected.resize(4 * BLK, 0);
    assert_eq!(apply(&files, 4 * BLK), expected);
}
