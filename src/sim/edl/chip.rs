//! What a virtual boot ROM says about its chip in Sahara command mode, and how it says it.
//!
//! Real boot ROMs differ (see `protocol::sahara::identity`); a profile reproduces one
//! habit at a time, so host code is tested against each: Sahara 2 with every query, Sahara
//! 3 refusing `MSM_HW_ID_READ` (and answering `READ_CHIP_ID_V3`, or nothing), 8-byte and
//! placeholder serials, a SHA-384 key hash followed by 48 zero bytes, and a ROM that
//! refuses command mode.

use sha2::{Digest, Sha256};

/// The virtual chip's MSM id, `0x0F1A5E00`: no real chip has it, so no host takes the
/// simulator for real hardware.
pub const VIRTUAL_MSM_ID: u32 = 0x0F1A_5E00;

/// The hardware id of the virtual chip (OEM and model id 0).
pub const VIRTUAL_HWID: u64 = (VIRTUAL_MSM_ID as u64) << 32;

/// The hash of the virtual OEM's root key: SHA-256 of a fixed text.
pub fn virtual_pk_hash() -> Vec<u8> {
    Sha256::digest("flashline virtual OEM root key").to_vec()
}

/// A boot ROM's command-mode answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipProfile {
    /// The Sahara version in HELLO. Version 3 refuses `MSM_HW_ID_READ`.
    pub sahara_version: u32,
    /// The raw `SERIAL_NUM_READ` answer (4 or 8 bytes, little-endian); `None` derives a
    /// 4-byte serial from the device's USB serial, so every virtual device has its own.
    pub serial: Option<Vec<u8>>,
    /// The hardware id. Sahara 2 answers it to `MSM_HW_ID_READ`, Sahara 3 in its
    /// `READ_CHIP_ID_V3` answer; `None` answers neither, as some v3 ROMs do.
    pub hwid: Option<u64>,
    /// The raw `OEM_PK_HASH_READ` answer, padding included.
    pub pk_hash: Vec<u8>,
    /// Whether the ROM accepts command mode at all.
    pub command_mode: bool,
}

impl Default for ChipProfile {
    /// Sahara 2, every query answered, a 4-byte serial and a 32-byte key hash.
    fn default() -> Self {
        ChipProfile {
            sahara_version: 2,
            serial: None,
            hwid: Some(VIRTUAL_HWID),
            pk_hash: virtual_pk_hash(),
            command_mode: true,
        }
    }
}

impl ChipProfile {
    /// A Sahara 3 ROM: an 8-byte serial, the hardware id only in `READ_CHIP_ID_V3`, and a
    /// SHA-384 key hash followed by 48 zero bytes.
    pub fn sahara_v3() -> ChipProfile {
        let mut pk_hash: Vec<u8> = Sha256::digest("flashline virtual OEM root key, 384")
            .iter()
            .chain(&Sha256::digest("second half")[..16])
            .copied()
            .collect();
        pk_hash.resize(96, 0);
        ChipProfile {
            sahara_version: 3,
            serial: Some(0x0123_4567_89AB_CDEFu64.to_le_bytes().to_vec()),
            pk_hash,
            ..ChipProfile::default()
        }
    }

    /// The virtual chip of another OEM's product (OEM id 1, its own root key), which no
    /// quirks entry names: a device that must be flashed by what its package says, not
    /// recognised as the MF833V the default chip stands for.
    pub fn unlisted() -> ChipProfile {
        ChipProfile {
            hwid: Some(VIRTUAL_HWID | 0x0001_0000),
            pk_hash: Sha256::digest("another virtual OEM root key").to_vec(),
            ..ChipProfile::default()
        }
    }

    /// The 4-byte chip serial a device with USB serial `usb_serial` has by default.
    pub fn derived_serial(usb_serial: &str) -> u32 {
        let digest = Sha256::digest(format!("serial {usb_serial}"));
        u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
    }

    /// The raw serial answer of a device with USB serial `usb_serial`.
    pub(super) fn serial_answer(&self, usb_serial: &str) -> Vec<u8> {
        self.serial
            .clone()
            .unwrap_or_else(|| Self::derived_serial(usb_serial).to_le_bytes().to_vec())
    }

    /// The `READ_CHIP_ID_V3` answer: the ids at bytes 36 (msm), 40 (oem), 42 (model).
    pub(super) fn chip_id_v3(&self) -> Option<Vec<u8>> {
        let hwid = self.hwid?;
        let mut answer = vec![0u8; 84];
        answer[36..40].copy_from_slice(&((hwid >> 32) as u32).to_le_bytes());
        answer[40..42].copy_from_slice(&((hwid >> 16) as u16).to_le_bytes());
        answer[42..44].copy_from_slice(&(hwid as u16).to_le_bytes());
        Some(answer)
    }
}
