//! The sparse splitter against Google's own tools (Debian `android-sdk-libsparse-utils`):
//! `simg2img` must reassemble our pieces into the image, and `simg2simg` — the same
//! resparse `fastboot flash` runs — must produce byte-identical pieces.

mod common;

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;

use flashline::protocol::sparse::{self, Layout, Piece, SourceCursor};

const MIB: usize = 1 << 20;
const BLK: usize = 4096;

/// Piece limits tried everywhere. Besides the observed 1 MiB, odd sizes and a limit that
/// needs no split, some sit exactly on libsparse's decision points for [`test_image`], so
/// that being off by a single byte in the reserve, the gap accounting or the 1/8 rule
/// changes the pieces:
/// * 1048644 = 56 + 12 + 256 blocks: the first 256 RAW blocks fit exactly; one byte less
///   and they do not. 1044560 = 56 + 24 + 255 blocks: the same for a piece that starts
///   with a gap.
/// * 2396865: a piece holding the first 512 RAW blocks and both FILLs has exactly
///   budget/8 bytes left for the next RAW chunk, so it closes; one byte more and the next
///   chunk is cut into it.
const LIMITS: [u64; 12] = [
    1 << 20,
    1_048_644,
    1_048_643,
    1_044_560,
    1_044_559,
    2_396_865,
    2_396_866,
    300_000,
    2 * (1 << 20) + 7,
    40_000,
    777_777,
    16 << 20,
];

/// Deterministic noise (xorshift64).
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

/// ~5 MiB: noise, zeros, a repeated non-zero pattern, noise, zeros, and `tail` bytes of
/// noise (a partial last block when `tail` is not a block multiple).
fn test_image(tail: usize) -> Vec<u8> {
    let mut image = noise(2 * MIB, 0x9e37_79b9_7f4a_7c15);
    image.extend(vec![0u8; MIB]);
    image.extend([0x12, 0x34, 0x56, 0x78].repeat(MIB / 8));
    image.extend(noise(MIB, 0x2545_f491_4f6c_dd1d));
    image.extend(vec![0u8; MIB / 2]);
    image.extend(noise(tail, 0x1234_5678));
    image
}

fn run(program: &Path, args: &[&Path], dir: &Path) {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Writes every piece to `<prefix>.N` in order, through one cursor over `source`, and
/// checks that each file has its announced length and the source was read exactly once.
fn write_pieces(layout: &Layout, pieces: &[Piece], source: &Path, prefix: &Path) -> Vec<PathBuf> {
    let mut src = SourceCursor::new(BufReader::new(File::open(source).unwrap()));
    let mut scratch = vec![0u8; 64 * 1024];
    let paths = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let path = prefix.with_extension(i.to_string());
            let mut out = File::create(&path).unwrap();
            piece
                .write(layout, &mut src, &mut out, &mut scratch)
                .unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), piece.encoded_len());
            path
        })
        .collect();
    assert_eq!(
        src.drain_to_end().unwrap(),
        fs::metadata(source).unwrap().len()
    );
    paths
}

/// The files `simg2simg` wrote for `prefix` (`prefix.0`, `prefix.1`, …).
fn numbered_files(prefix: &Path) -> Vec<PathBuf> {
    (0..)
        .map(|i| prefix.with_extension(i.to_string()))
        .take_while(|p| p.exists())
        .collect()
}

/// (type, blocks) of each chunk of a sparse file, for readable failure messages.
fn chunk_list(file: &[u8]) -> Vec<(u16, u32)> {
    let word = |at: usize| u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 28;
    while at < file.len() {
        out.push((u16::from_le_bytes([file[at], file[at + 1]]), word(at + 4)));
        let total_sz = word(at + 8) as usize;
        assert!(total_sz >= 12, "chunk at byte {at} has total_sz {total_sz}");
        at += total_sz;
    }
    out
}

/// Asserts that our pieces and simg2simg's are the same files, byte for byte.
fn assert_same_pieces(ours: &[PathBuf], theirs: &[PathBuf], context: &str) {
    let read = |paths: &[PathBuf]| {
        paths
            .iter()
            .map(|p| fs::read(p).unwrap())
            .collect::<Vec<_>>()
    };
    let (ours, theirs) = (read(ours), read(theirs));
    let layouts = |files: &[Vec<u8>]| files.iter().map(|f| chunk_list(f)).collect::<Vec<_>>();
    assert_eq!(
        layouts(&ours),
        layouts(&theirs),
        "{context}: chunk layouts differ"
    );
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!(a == b, "{context}: piece {i} differs from simg2simg's");
    }
}

/// (1) simg2img applies our pieces, in order, and gets the image back (zero-padded to a
/// whole block).
#[test]
fn simg2img_reassembles_our_pieces() {
    let Some(simg2img) = common::peer("simg2img") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tail in [0, 1000] {
        let image = test_image(tail);
        let source = dir.path().join("image.raw");
        fs::write(&source, &image).unwrap();
        let mut expected = image.clone();
        expected.resize(image.len().div_ceil(BLK) * BLK, 0);
        let layout = sparse::scan_raw(File::open(&source).unwrap(), image.len() as u64).unwrap();
        for limit in LIMITS {
            let pieces = sparse::split(&layout, limit).unwrap();
            let paths = write_pieces(&layout, &pieces, &source, &dir.path().join("ours"));
            assert!(paths
                .iter()
                .all(|p| fs::metadata(p).unwrap().len() <= limit));
            let out = dir.path().join("out.raw");
            let mut args: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
            args.push(&out);
            run(&simg2img, &args, dir.path());
            let got = fs::read(&out).unwrap();
            assert!(
                got == expected,
                "tail {tail}, limit {limit}: {} pieces do not reassemble",
                paths.len()
            );
            for p in paths.iter().chain([&out]) {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

/// (2) For a sparse input, our split is byte-identical to `simg2simg IN OUT MAX`: first
/// img2simg's file (RAW and FILL chunks), then one of our own pieces, whose DONT_CARE
/// gaps exercise the gap accounting.
#[test]
fn split_of_a_sparse_file_is_byte_identical_to_simg2simg() {
    let (Some(img2simg), Some(simg2simg)) = (common::peer("img2simg"), common::peer("simg2simg"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("image.raw");
    fs::write(&raw, test_image(1000)).unwrap();
    let sparse_file = dir.path().join("image.simg");
    run(&img2simg, &[&raw, &sparse_file], dir.path());

    // A piece with DONT_CARE before and after its data, cut from img2simg's file.
    let layout = sparse::scan_sparse(File::open(&sparse_file).unwrap()).unwrap();
    let pieces = sparse::split(&layout, 3 * MIB as u64).unwrap();
    let middle = write_pieces(&layout, &pieces, &sparse_file, &dir.path().join("gappy"))[1].clone();
    assert_eq!(
        chunk_list(&fs::read(&middle).unwrap())[0].0,
        0xCAC3,
        "starts with a gap"
    );

    for input in [&sparse_file, &middle] {
        let layout = sparse::scan_sparse(File::open(input).unwrap()).unwrap();
        for limit in LIMITS {
            let context = format!("{} at {limit}", input.display());
            let pieces = sparse::split(&layout, limit).unwrap();
            let ours = write_pieces(&layout, &pieces, input, &dir.path().join("ours"));
            let prefix = dir.path().join("theirs");
            run(
                &simg2simg,
                &[input, &prefix, Path::new(&limit.to_string())],
                dir.path(),
            );
            let theirs = numbered_files(&prefix);
            assert_same_pieces(&ours, &theirs, &context);
            for p in ours.iter().chain(&theirs) {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

/// (3) Importing the raw image ourselves gives the same layout as img2simg (libsparse's
/// raw import, which `fastboot flash` also uses), so splitting it is byte-identical to
/// simg2simg run on img2simg's output.
#[test]
fn split_of_a_raw_image_matches_img2simg_then_simg2simg() {
    let (Some(img2simg), Some(simg2simg)) = (common::peer("img2simg"), common::peer("simg2simg"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tail in [0, 1000] {
        let image = test_image(tail);
        let raw = dir.path().join("image.raw");
        fs::write(&raw, &image).unwrap();
        let sparse_file = dir.path().join("image.simg");
        run(&img2simg, &[&raw, &sparse_file], dir.path());

        let ours = sparse::scan_raw(File::open(&raw).unwrap(), image.len() as u64).unwrap();
        let theirs = sparse::scan_sparse(File::open(&sparse_file).unwrap()).unwrap();
        assert_eq!(
            (ours.blk_sz, ours.total_blks),
            (theirs.blk_sz, theirs.total_blks)
        );
        let shape = |l: &Layout| {
            l.chunks
                .iter()
                .map(|c| {
                    (
                        c.start_block,
                        c.blocks,
                        matches!(c.data, sparse::ChunkData::Raw { .. }),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            shape(&ours),
            shape(&theirs),
            "tail {tail}: raw import differs from img2simg"
        );

        for limit in LIMITS {
            let context = format!("tail {tail}, limit {limit}");
            let pieces = sparse::split(&ours, limit).unwrap();
            let ours_files = write_pieces(&ours, &pieces, &raw, &dir.path().join("ours"));
            let prefix = dir.path().join("theirs");
            run(
                &simg2simg,
                &[&sparse_file, &prefix, Path::new(&limit.to_string())],
                dir.path(),
            );
            let theirs_files = numbered_files(&prefix);
            assert_same_pieces(&ours_files, &theirs_files, &context);
            for p in ours_files.iter().chain(&theirs_files) {
                fs::remove_file(p).unwrap();
            }
        }
    }
}

/// Just enough of a fastboot device on TCP (FB01 handshake, 8-byte length frames) to
/// record what Google's client downloads; one connection, every wait bounded.
fn record_fastboot_downloads(listener: std::net::TcpListener, max_download: u32) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("fastboot did not connect: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hello = [0u8; 4];
    stream.read_exact(&mut hello).unwrap();
    assert_eq!(&hello, b"FB01");
    stream.write_all(b"FB01").unwrap();

    // Payload bytes still to come in the current frame (a download spans frames).
    let mut left = 0u64;
    let mut read_payload = |stream: &mut std::net::TcpStream, buf: &mut [u8]| {
        let mut done = 0;
        while done < buf.len() {
            if left == 0 {
                let mut len = [0u8; 8];
                stream.read_exact(&mut len).unwrap();
                left = u64::from_be_bytes(len);
                continue;
            }
            let n = left.min((buf.len() - done) as u64) as usize;
            stream.read_exact(&mut buf[done..done + n]).unwrap();
            done += n;
            left -= n as u64;
        }
    };
    let send = |stream: &mut std::net::TcpStream, msg: &[u8]| {
        stream.write_all(&(msg.len() as u64).to_be_bytes()).unwrap();
        stream.write_all(msg).unwrap();
    };
    let mut downloads = Vec::new();
    loop {
        let mut len = [0u8; 8];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return downloads,
            Err(e) => panic!("reading a command: {e}"),
        }
        let mut command = vec![0u8; u64::from_be_bytes(len) as usize];
        stream.read_exact(&mut command).unwrap();
        let command = String::from_utf8(command).unwrap();
        if command == "getvar:max-download-size" {
            send(&mut stream, format!("OKAY0x{max_download:08x}").as_bytes());
        } else if command.starts_with("getvar:has-slot:") {
            send(&mut stream, b"OKAYno");
        } else if command.starts_with("getvar:") {
            send(&mut stream, b"FAILunknown variable");
        } else if let Some(size) = command.strip_prefix("download:") {
            let size = usize::from_str_radix(size, 16).unwrap();
            send(&mut stream, format!("DATA{size:08x}").as_bytes());
            let mut data = vec![0u8; size];
            read_payload(&mut stream, &mut data);
            downloads.push(data);
            send(&mut stream, b"OKAY");
        } else {
            send(&mut stream, b"OKAY");
        }
    }
}

/// What Google's client itself sends for `fastboot flash system image.raw` when the raw
/// image exceeds max-download-size, against our pieces. For a block-aligned image they
/// are byte-identical. For an unaligned one, fastboot 29.0.6 cannot write the trailing
/// DONT_CARE of a piece (libsparse refuses a skip that is not a block multiple and the
/// client ignores the error), so it sends pieces whose header counts one chunk more than
/// they hold; ours carry that chunk and are otherwise identical.
#[test]
fn fastboot_client_sends_our_pieces() {
    let Some(fastboot) = common::peer("fastboot") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for tail in [0, 1000] {
        let image = test_image(tail);
        let raw = dir.path().join("image.raw");
        fs::write(&raw, &image).unwrap();
        let layout = sparse::scan_raw(File::open(&raw).unwrap(), image.len() as u64).unwrap();
        let pieces = sparse::split(&layout, MIB as u64).unwrap();
        let ours: Vec<Vec<u8>> = write_pieces(&layout, &pieces, &raw, &dir.path().join("ours"))
            .iter()
            .map(|p| fs::read(p).unwrap())
            .collect();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("tcp:{}", listener.local_addr().unwrap());
        let device = std::thread::spawn(move || record_fastboot_downloads(listener, MIB as u32));
        let output = Command::new(&fastboot)
            .args(["-s", &target, "flash", "system"])
            .arg(&raw)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let theirs = device.join().unwrap();

        assert_eq!(ours.len(), theirs.len(), "tail {tail}: piece count");
        let last = ours.len() - 1;
        for (i, (piece, sent)) in ours.iter().zip(&theirs).enumerate() {
            if tail == 0 || i == last {
                assert!(
                    piece == sent,
                    "tail {tail}: piece {i} differs from fastboot's"
                );
            } else {
                let (body, trailer) = piece.split_at(piece.len() - 12);
                let dont_care = chunk_list(piece).last().copied().unwrap();
                assert_eq!(
                    dont_care.0, 0xCAC3,
                    "tail {tail}: piece {i} ends with DONT_CARE"
                );
                assert_eq!(chunk_list(&trailer_as_file(trailer)), [dont_care]);
                assert!(
                    body == &sent[..],
                    "tail {tail}: piece {i} differs beyond the trailing DONT_CARE"
                );
            }
        }
    }
}

/// A lone chunk header wrapped in a dummy file header, for [`chunk_list`].
fn trailer_as_file(chunk: &[u8]) -> Vec<u8> {
    let mut file = vec![0u8; 28];
    file.extend_from_slice(chunk);
    file
}
