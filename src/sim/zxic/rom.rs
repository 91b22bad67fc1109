//! The boot ROM and tloader stages: the byte protocol of
//! [`crate::protocol::zxic::bootrom`], on the device's side.

use std::time::Duration;

use crate::protocol::zxic::bootrom::{
    is_tloader, DATA_ACK, JUMP, JUMP_ACK, LOAD, LOAD_ACK, SYNC, SYNC_ACK, UIMAGE_MAGIC,
};
use crate::protocol::zxic::{TBOOT_ADDRESS, TLOADER_ADDRESS};

use super::{next_byte, read_exact, Device, Line};

/// Which loader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The mask ROM: takes tloader into on-chip RAM.
    BootRom,
    /// tloader: DRAM is up; takes tboot.
    Tloader,
}

/// Largest image the boot ROM takes (its on-chip RAM); tloaders are a few tens of KiB.
const IRAM_LEN: u32 = 256 * 1024;
/// Largest image tloader takes into DRAM; tboot is a few hundred KiB.
const DRAM_LOAD_LEN: u32 = 16 * 1024 * 1024;

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::BootRom => "bootrom",
            Stage::Tloader => "tloader",
        }
    }

    /// Whether this stage takes `len` bytes at `address`.
    fn takes(self, address: u32, len: u32) -> bool {
        match self {
            Stage::BootRom => address == TLOADER_ADDRESS && len > 0 && len <= IRAM_LEN,
            Stage::Tloader => address == TBOOT_ADDRESS && len > 0 && len <= DRAM_LOAD_LEN,
        }
    }

    /// Whether what was loaded runs: the boot ROM wants a tloader; tloader jumps into
    /// whatever it loaded, and a tboot that still starts with its uImage header crashes.
    fn runs(self, image: &[u8]) -> bool {
        match self {
            Stage::BootRom => is_tloader(image),
            Stage::Tloader => image.get(..4) != Some(&UIMAGE_MAGIC.to_be_bytes()[..]),
        }
    }
}

/// Serves `stage` until the host jumps into a loader that runs: `Some(())`. `None` when
/// stopping, or when the loaded image crashed on the jump (the device resets).
pub(super) fn run(device: &Device, line: &mut dyn Line, stage: Stage) -> Option<()> {
    let name = stage.name();
    let wait = device.cfg.data_timeout;
    let mut loaded: Option<(u32, Vec<u8>)> = None;
    loop {
        match next_byte(line)? {
            SYNC => {
                device.record(format!("{name}:sync"));
                line.write(&[SYNC_ACK], wait).ok()?;
            }
            LOAD => {
                let mut fields = [0u8; 8];
                read_exact(line, &mut fields, wait)?;
                let address = u32::from_be_bytes(fields[..4].try_into().expect("4"));
                let len = u32::from_be_bytes(fields[4..].try_into().expect("4"));
                device.record(format!("{name}:load 0x{address:08x}+{len}"));
                if !stage.takes(address, len) {
                    device.record(format!("{name}:load refused"));
                    continue;
                }
                line.write(&[LOAD_ACK], wait).ok()?;
                let mut image = vec![0u8; len as usize];
                if read_exact(line, &mut image, wait).is_none() {
                    device.record(format!("{name}:load timed out"));
                    continue;
                }
                line.write(&[DATA_ACK], wait).ok()?;
                loaded = Some((address, image));
            }
            JUMP => {
                let mut field = [0u8; 4];
                read_exact(line, &mut field, wait)?;
                let address = u32::from_be_bytes(field);
                device.record(format!("{name}:jump 0x{address:08x}"));
                match &loaded {
                    Some((at, image)) if *at == address => {
                        line.write(&[JUMP_ACK], wait).ok()?;
                        if stage.runs(image) {
                            return Some(());
                        }
                        device.record(format!("{name}:the image crashed"));
                        line.pause(Duration::from_millis(200));
                        return None;
                    }
                    _ => device.record(format!("{name}:nothing loaded there")),
                }
            }
            other => device.record(format!("{name}:ignored byte 0x{other:02x}")),
        }
    }
}
