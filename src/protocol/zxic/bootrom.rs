//! The boot ROM's byte protocol, which the first loader (`tloader`) speaks too.
//!
//! | host | device |
//! |---|---|
//! | `0x5A` (sync) | `0xA5` (boot ROM, tloader); `0xA7` once tboot runs |
//! | `0x7A` + address (BE u32) + length (BE u32) | `0xA1` |
//! | the image's bytes | `0xA7` |
//! | `0x8A` + address (BE u32) | `0xA8`, then the stage runs |
//!
//! Sources: zx297520v3-loader src/main.rs (constants, big-endian fields, `0xA7` from stock
//! tboot) and the vendor flasher zte_download.c (`DownloadOneBoot`, `PreInitBoot`: tloader at
//! 0x82000, a sync with tloader before tboot is sent, tboot sent without its 64-byte uImage
//! header, at the address its header names).

use std::io::Read;
use std::time::Duration;

use super::{Link, ZxicError};
use crate::transport::{Transport, TransportError};

/// Host: are you there?
pub const SYNC: u8 = 0x5A;
/// Boot ROM and tloader: here.
pub const SYNC_ACK: u8 = 0xA5;
/// tboot (TBootPro): here.
pub const TBOOT_SYNC_ACK: u8 = 0xA7;
/// Host: load an image.
pub const LOAD: u8 = 0x7A;
/// Device: address and length accepted, send the bytes.
pub const LOAD_ACK: u8 = 0xA1;
/// Device: image received.
pub const DATA_ACK: u8 = 0xA7;
/// Host: run the image at an address.
pub const JUMP: u8 = 0x8A;
/// Device: jumping.
pub const JUMP_ACK: u8 = 0xA8;

/// Where tloader is loaded and run (on-chip RAM).
pub const TLOADER_ADDRESS: u32 = 0x0008_2000;
/// Where stock tboot is loaded and run (DRAM, once tloader set it up); the vendor flasher
/// reads it from the uImage header's entry point.
pub const TBOOT_ADDRESS: u32 = 0x27EF_0000;
/// What tloader carries at [`TLOADER_MAGIC_OFFSET`].
pub const TLOADER_MAGIC: &[u8; 8] = b"ZX7521V1";
/// Where tloader carries its magic.
pub const TLOADER_MAGIC_OFFSET: usize = 4;
/// Length of tboot's uImage header, which the host strips.
pub const UIMAGE_HEADER_LEN: usize = 64;
/// The uImage magic (big-endian at offset 0).
pub const UIMAGE_MAGIC: u32 = 0x2705_1956;

/// How many times a sync is tried (the vendor flasher tries up to 20 times).
const SYNC_TRIES: u32 = 20;
/// How long one sync waits for its answer.
const SYNC_WAIT: Duration = Duration::from_millis(500);

/// What answered a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The boot ROM or tloader: loads images.
    BootRom,
    /// tboot: speaks TBootPro.
    TBoot,
}

/// `0x7A` + address + length, as sent.
pub fn load_command(address: u32, len: u32) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = LOAD;
    out[1..5].copy_from_slice(&address.to_be_bytes());
    out[5..9].copy_from_slice(&len.to_be_bytes());
    out
}

/// `0x8A` + address, as sent.
pub fn jump_command(address: u32) -> [u8; 5] {
    let mut out = [0u8; 5];
    out[0] = JUMP;
    out[1..5].copy_from_slice(&address.to_be_bytes());
    out
}

/// Whether `head` (an image's first bytes) is a tloader.
pub fn is_tloader(head: &[u8]) -> bool {
    head.get(TLOADER_MAGIC_OFFSET..TLOADER_MAGIC_OFFSET + TLOADER_MAGIC.len())
        == Some(&TLOADER_MAGIC[..])
}

/// What a uImage header says about tboot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UImage {
    /// Bytes after the header (`ih_size`).
    pub data_len: u32,
    /// The entry point (`ih_ep`), where the vendor flasher loads and runs it.
    pub entry: u32,
}

/// Parses tboot's 64-byte uImage header; `None` if `header` is not one.
pub fn parse_uimage(header: &[u8]) -> Option<UImage> {
    let word = |at: usize| {
        header
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    if header.len() < UIMAGE_HEADER_LEN || word(0)? != UIMAGE_MAGIC {
        return None;
    }
    Some(UImage {
        data_len: word(12)?,
        entry: word(20)?,
    })
}

impl<T: Transport> Link<T> {
    /// Sends `0x5A` until something answers (a few tries, as the vendor flasher does) and
    /// says which stage it is. Anything else than the two sync answers is an error.
    pub fn sync(&mut self) -> Result<Stage, ZxicError> {
        for _ in 0..SYNC_TRIES {
            self.purge();
            self.send(&[SYNC])?;
            match self.byte_within(SYNC_WAIT) {
                Ok(SYNC_ACK) => return Ok(Stage::BootRom),
                Ok(TBOOT_SYNC_ACK) => return Ok(Stage::TBoot),
                Ok(got) => {
                    return Err(ZxicError::Ack {
                        step: "sync",
                        expected: SYNC_ACK,
                        got,
                    })
                }
                Err(ZxicError::Transport(TransportError::Timeout(_))) => {}
                Err(e) => return Err(e),
            }
        }
        Err(TransportError::Timeout(SYNC_WAIT * SYNC_TRIES).into())
    }

    /// Loads `len` bytes from `image` at `address` (boot ROM or tloader); `progress` gets
    /// the bytes sent so far.
    pub fn load(
        &mut self,
        address: u32,
        image: &mut dyn Read,
        len: u32,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ZxicError> {
        self.send(&load_command(address, len))?;
        self.expect("load", LOAD_ACK)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(buf.len());
            image.read_exact(&mut buf[..n]).map_err(ZxicError::Io)?;
            self.send(&buf[..n])?;
            left -= n;
            progress(u64::from(len) - left as u64);
        }
        self.expect("image transfer", DATA_ACK)
    }

    /// Runs the image loaded at `address`.
    pub fn jump(&mut self, address: u32) -> Result<(), ZxicError> {
        self.send(&jump_command(address))?;
        self.expect("jump", JUMP_ACK)
    }

    fn expect(&mut self, step: &'static str, expected: u8) -> Result<(), ZxicError> {
        let got = self.byte_within(self.timeout())?;
        if got == expected {
            Ok(())
        } else {
            Err(ZxicError::Ack {
                step,
                expected,
                got,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_big_endian() {
        assert_eq!(
            load_command(TBOOT_ADDRESS, 0x1234),
            [0x7A, 0x27, 0xEF, 0, 0, 0, 0, 0x12, 0x34]
        );
        assert_eq!(jump_command(TLOADER_ADDRESS), [0x8A, 0, 0x08, 0x20, 0]);
    }

    #[test]
    fn loaders_are_recognised() {
        assert!(is_tloader(b"\0\0\0\0ZX7521V1rest"));
        assert!(!is_tloader(b"ZX7521V1"));
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(&UIMAGE_MAGIC.to_be_bytes());
        header[12..16].copy_from_slice(&100u32.to_be_bytes());
        header[20..24].copy_from_slice(&TBOOT_ADDRESS.to_be_bytes());
        assert_eq!(
            parse_uimage(&header),
            Some(UImage {
                data_len: 100,
                entry: TBOOT_ADDRESS
            })
        );
        assert_eq!(parse_uimage(&header[..63]), None);
        header[0] = 0;
        assert_eq!(parse_uimage(&header), None);
    }
}
