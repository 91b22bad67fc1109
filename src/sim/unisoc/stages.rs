//! The stages of the virtual device on its line: boot ROM, FDL1, FDL2, from power-on to
//! the next reboot.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{lock, partition_path, Device};
use crate::protocol::unisoc::{
    self, cmd, decode_name, Check, Decoder, Direction, Frame, Step, NAME_LEN, PARTITION_ENTRY_LEN,
};
use crate::sim::edl::Line;
use crate::sim::fault::{Cut, Match, Reaction};
use crate::transport::TransportError;

/// Largest loader a stage accepts (real FDL2s are about 1 MiB).
const MAX_LOADER: u32 = 8 * 1024 * 1024;
/// FDL1's version string, as public spd_dump logs show it (TomKing062/spreadtrum_flash
/// issue #30, CVE-2022-38694_unlock_bootloader issues #236 and #322).
const FDL1_VERSION: &[u8] = b"Spreadtrum Boot Block version 1.1\0";
/// How long each read of the line waits.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Brom,
    Fdl1,
    Fdl2,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Brom => "brom",
            Stage::Fdl1 => "fdl1",
            Stage::Fdl2 => "fdl2",
        }
    }
}

/// What happens after a command.
enum Flow {
    Continue,
    Reboot,
}

/// A loader being received by the boot ROM or FDL1.
struct Load {
    addr: u32,
    size: u32,
    data: Vec<u8>,
}

/// A partition write being received by FDL2, staged until its last byte.
struct Staged {
    name: String,
    size: u64,
    data: Vec<u8>,
}

struct Session<'a> {
    device: &'a Device,
    line: &'a mut dyn Line,
    stage: Stage,
    decoder: Decoder,
    transcode: bool,
    /// The last byte was a bare flag: a check-baud, if quiet follows.
    asked_version: bool,
    load: Option<Load>,
    loaded: Option<Load>,
    staged: Option<Staged>,
    reading: Option<(String, u64)>,
}

/// Runs the device from its boot ROM until it reboots (reset, fault, a host gone silent
/// in the middle of an exchange) or the simulator stops.
pub(super) fn run(device: &Device, line: &mut dyn Line) {
    let mut session = Session {
        device,
        line,
        stage: Stage::Brom,
        decoder: Decoder::new(Check::Crc16, Direction::ToDevice),
        transcode: true,
        asked_version: false,
        load: None,
        loaded: None,
        staged: None,
        reading: None,
    };
    session.serve();
}

impl Session<'_> {
    fn serve(&mut self) {
        let mut buf = vec![0u8; 0x10000];
        let mut last = Instant::now();
        loop {
            match self.line.read(&mut buf, POLL) {
                Ok(n) => {
                    last = Instant::now();
                    for &byte in &buf[..n] {
                        if let Flow::Reboot = self.byte(byte) {
                            return;
                        }
                    }
                }
                Err(TransportError::Timeout(_)) => {
                    // Bare flags followed by quiet are a check-baud: the host waits for the
                    // version. (A flag that opens a frame is followed by the frame.)
                    if self.asked_version && self.stage != Stage::Fdl2 {
                        self.asked_version = false;
                        self.device.record(format!("{}:version", self.stage.name()));
                        let version = match self.stage {
                            Stage::Brom => self.device.cfg.brom_version.clone(),
                            _ => FDL1_VERSION.to_vec(),
                        };
                        self.reply(cmd::REP_VER, &version);
                    }
                    // A loader stage with nobody talking to it is a host that went away:
                    // the device's watchdog brings it back to the boot ROM.
                    let busy = self.stage != Stage::Brom || self.load.is_some();
                    if busy && last.elapsed() >= self.device.cfg.data_timeout {
                        self.device
                            .record(format!("{}:watchdog", self.stage.name()));
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    fn byte(&mut self, byte: u8) -> Flow {
        match self.decoder.push(byte) {
            Ok(Step::More) => {
                self.asked_version = false;
                Flow::Continue
            }
            Ok(Step::BareFlag) => {
                self.asked_version = true;
                Flow::Continue
            }
            Ok(Step::Frame(frame)) => {
                self.asked_version = false;
                self.command(frame)
            }
            Err(e) => {
                self.asked_version = false;
                self.device
                    .record(format!("{}:verify-error {e}", self.stage.name()));
                self.reply(cmd::REP_VERIFY_ERROR, &[]);
                Flow::Continue
            }
        }
    }

    fn check(&self) -> Check {
        match self.stage {
            Stage::Brom => Check::Crc16,
            _ => Check::Sum,
        }
    }

    fn reply(&mut self, kind: u16, payload: &[u8]) {
        let frame = unisoc::encode(
            kind,
            payload,
            self.check(),
            Direction::ToHost,
            self.transcode,
        )
        .expect("device replies fit in a frame");
        if let Err(e) = self.line.write(&frame, Duration::from_secs(2)) {
            tracing::debug!("unisoc sim: reply not delivered: {e}");
        }
    }

    /// The answer with its check field corrupted: a checksum fault on the link.
    fn reply_corrupted(&mut self, kind: u16) {
        let mut raw = kind.to_be_bytes().to_vec();
        raw.extend_from_slice(&[0, 0]);
        let good = unisoc::check_value(self.check(), Direction::ToHost, &raw);
        raw.extend_from_slice(&(good ^ 0x0101).to_be_bytes());
        let frame = unisoc::delimit(&raw, self.transcode);
        let _ = self.line.write(&frame, Duration::from_secs(2));
    }

    fn text(&self, frame: &Frame) -> String {
        let name = match frame.kind {
            cmd::CONNECT => "CONNECT",
            cmd::START_DATA => "START_DATA",
            cmd::MIDST_DATA => "MIDST_DATA",
            cmd::END_DATA => "END_DATA",
            cmd::EXEC_DATA => "EXEC_DATA",
            cmd::NORMAL_RESET => "NORMAL_RESET",
            cmd::ERASE_FLASH => "ERASE_FLASH",
            cmd::READ_START => "READ_START",
            cmd::READ_MIDST => "READ_MIDST",
            cmd::READ_END => "READ_END",
            cmd::KEEP_CHARGE => "KEEP_CHARGE",
            cmd::POWER_OFF => "POWER_OFF",
            cmd::DISABLE_TRANSCODE => "DISABLE_TRANSCODE",
            cmd::READ_PARTITION => "READ_PARTITION",
            _ => return format!("0x{:02x}", frame.kind),
        };
        let about = match (self.stage, frame.kind) {
            (Stage::Fdl2, cmd::START_DATA | cmd::READ_START | cmd::ERASE_FLASH) => {
                frame.payload.get(..NAME_LEN).and_then(decode_name)
            }
            (Stage::Fdl2, cmd::MIDST_DATA | cmd::END_DATA) => {
                self.staged.as_ref().map(|s| s.name.clone())
            }
            (Stage::Fdl2, cmd::READ_MIDST | cmd::READ_END) => {
                self.reading.as_ref().map(|r| r.0.clone())
            }
            _ => None,
        };
        match about {
            Some(about) => format!("{name} {about}"),
            None => name.to_string(),
        }
    }

    fn command(&mut self, frame: Frame) -> Flow {
        let text = self.text(&frame);
        let reaction = lock(&self.device.faults).on_command(&text, Match::Exact);
        match reaction {
            Some(Reaction::Fail) => {
                self.device
                    .record(format!("{}:refused {text} (injected)", self.stage.name()));
                self.reply(cmd::REP_OPERATION_FAILED, b"injected fault\0");
                return Flow::Continue;
            }
            Some(Reaction::Garbage) => {
                self.device.record(format!(
                    "{}:corrupted answer to {text} (injected)",
                    self.stage.name()
                ));
                self.reply_corrupted(cmd::REP_ACK);
                return Flow::Continue;
            }
            Some(Reaction::Stall) => {
                self.device.record(format!(
                    "{}:stalled on {text} (injected)",
                    self.stage.name()
                ));
                self.hang();
                return Flow::Reboot;
            }
            Some(Reaction::Reenumerate | Reaction::Drop) => {
                self.device.record(format!(
                    "{}:rebooted on {text} (injected)",
                    self.stage.name()
                ));
                return Flow::Reboot;
            }
            None => {}
        }
        match self.stage {
            Stage::Brom | Stage::Fdl1 => self.loader_stage(frame),
            Stage::Fdl2 => self.fdl2(frame),
        }
    }

    /// Drops everything until the line has been quiet for the data timeout.
    fn hang(&mut self) {
        let quiet = self.device.cfg.data_timeout;
        let mut last = Instant::now();
        let mut buf = [0u8; 4096];
        while last.elapsed() < quiet && !self.line.stopping() {
            match self.line.read(&mut buf, POLL) {
                Ok(_) => last = Instant::now(),
                Err(TransportError::Timeout(_)) => {}
                Err(_) => return,
            }
        }
    }

    /// Counts payload bytes and says whether a byte fault cut the power or the link.
    fn count(&mut self, received: u64, written: u64) -> bool {
        let mut faults = lock(&self.device.faults);
        faults.add_received(received);
        faults.add_written(written);
        match faults.cut() {
            Some(cut) => {
                drop(faults);
                let what = match cut {
                    Cut::Link => "link dropped",
                    Cut::Power => "power lost",
                };
                self.device
                    .record(format!("{}:{what} (injected)", self.stage.name()));
                true
            }
            None => false,
        }
    }

    fn loader_stage(&mut self, frame: Frame) -> Flow {
        let stage = self.stage.name();
        match frame.kind {
            cmd::CONNECT | cmd::KEEP_CHARGE => {
                self.device.record(format!("{stage}:{}", self.text(&frame)));
                self.reply(cmd::REP_ACK, &[]);
            }
            cmd::START_DATA => {
                let Some((addr, size)) = be_pair(&frame.payload) else {
                    self.reply(cmd::REP_INVALID_CMD, &[]);
                    return Flow::Continue;
                };
                if size > MAX_LOADER {
                    self.reply(cmd::REP_DOWN_SIZE_ERROR, &[]);
                    return Flow::Continue;
                }
                self.load = Some(Load {
                    addr,
                    size,
                    data: Vec::new(),
                });
                self.reply(cmd::REP_ACK, &[]);
            }
            cmd::MIDST_DATA => {
                let Some(load) = self.load.as_mut() else {
                    self.reply(cmd::REP_DOWN_NOT_START, &[]);
                    return Flow::Continue;
                };
                if load.data.len() + frame.payload.len() > load.size as usize {
                    self.reply(cmd::REP_DOWN_SIZE_ERROR, &[]);
                    return Flow::Continue;
                }
                load.data.extend_from_slice(&frame.payload);
                if self.count(frame.payload.len() as u64, 0) {
                    return Flow::Reboot;
                }
                self.reply(cmd::REP_ACK, &[]);
            }
            cmd::END_DATA => match self.load.take() {
                Some(load) if load.data.len() == load.size as usize => {
                    self.device.record(format!(
                        "{stage}:loader addr=0x{:x} size={}",
                        load.addr, load.size
                    ));
                    self.loaded = Some(load);
                    self.reply(cmd::REP_ACK, &[]);
                }
                Some(_) => self.reply(cmd::REP_DOWN_EARLY_END, &[]),
                None => self.reply(cmd::REP_DOWN_NOT_START, &[]),
            },
            cmd::EXEC_DATA => return self.exec(),
            _ => self.reply(cmd::REP_INVALID_CMD, &[]),
        }
        Flow::Continue
    }

    fn exec(&mut self) -> Flow {
        let Some(loaded) = self.loaded.take() else {
            self.reply(cmd::REP_DOWN_NOT_START, &[]);
            return Flow::Continue;
        };
        let sha: [u8; 32] = Sha256::digest(&loaded.data).into();
        let stage = self.stage.name();
        if self.stage == Stage::Brom {
            if let Some(wanted) = self.device.cfg.fdl1_sha256 {
                if wanted != sha {
                    self.device
                        .record(format!("brom:refused fdl1 sha256={}", hex::encode(sha)));
                    self.reply(cmd::REP_SIGN_VERIFY_ERROR, &[]);
                    return Flow::Continue;
                }
            }
        }
        self.device.record(format!(
            "{stage}:exec addr=0x{:x} sha256={}",
            loaded.addr,
            hex::encode(sha)
        ));
        match self.stage {
            Stage::Brom => {
                self.reply(cmd::REP_ACK, &[]);
                self.stage = Stage::Fdl1;
                self.decoder = Decoder::new(Check::Sum, Direction::ToDevice);
            }
            _ => {
                self.stage = Stage::Fdl2;
                self.reply(cmd::REP_INCOMPATIBLE_PARTITION, &[]);
            }
        }
        Flow::Continue
    }

    fn fdl2(&mut self, frame: Frame) -> Flow {
        match frame.kind {
            cmd::CONNECT | cmd::KEEP_CHARGE => self.reply(cmd::REP_ACK, &[]),
            cmd::DISABLE_TRANSCODE => {
                self.device.record("fdl2:transcode off".into());
                self.reply(cmd::REP_ACK, &[]);
                self.transcode = false;
                self.decoder.set_transcode(false);
            }
            cmd::READ_PARTITION => {
                let mut list = Vec::with_capacity(self.device.cfg.partitions.len() * 0x4c);
                for (name, kib) in &self.device.cfg.partitions {
                    let mut entry = unisoc::encode_name(name)
                        .expect("names were checked")
                        .to_vec();
                    entry.extend_from_slice(&kib.to_le_bytes());
                    debug_assert_eq!(entry.len(), PARTITION_ENTRY_LEN);
                    list.extend_from_slice(&entry);
                }
                self.device.record("fdl2:partitions".into());
                self.reply(cmd::REP_READ_PARTITION, &list);
            }
            cmd::START_DATA => {
                let Some((name, size)) = self.select(&frame.payload) else {
                    self.reply(cmd::REP_DOWN_DEST_ERROR, &[]);
                    return Flow::Continue;
                };
                if size > self.device.size_of(&name).unwrap_or(0) {
                    self.reply(cmd::REP_DOWN_SIZE_ERROR, &[]);
                    return Flow::Continue;
                }
                self.staged = Some(Staged {
                    name,
                    size,
                    data: Vec::new(),
                });
                self.reply(cmd::REP_ACK, &[]);
            }
            cmd::MIDST_DATA => return self.midst(&frame.payload),
            cmd::END_DATA => match self.staged.take() {
                Some(s) if s.data.len() as u64 == s.size => {
                    self.device
                        .record(format!("fdl2:write {} {} bytes", s.name, s.size));
                    self.reply(cmd::REP_ACK, &[]);
                }
                Some(s) => {
                    self.device
                        .record(format!("fdl2:early end {} (nothing stored)", s.name));
                    self.reply(cmd::REP_DOWN_EARLY_END, &[]);
                }
                None => self.reply(cmd::REP_DOWN_NOT_START, &[]),
            },
            cmd::READ_START => match self.select(&frame.payload) {
                Some((name, _)) => {
                    self.reading = Some((name, 0));
                    self.reply(cmd::REP_ACK, &[]);
                }
                None => self.reply(cmd::REP_OPERATION_FAILED, &[]),
            },
            cmd::READ_MIDST => self.read_midst(&frame.payload),
            cmd::READ_END => {
                if let Some((name, bytes)) = self.reading.take() {
                    self.device
                        .record(format!("fdl2:read {name} {bytes} bytes"));
                }
                self.reply(cmd::REP_ACK, &[]);
            }
            cmd::ERASE_FLASH => match self.select(&frame.payload) {
                Some((name, _)) => {
                    let len = self.device.size_of(&name).unwrap_or(0) as usize;
                    let path = partition_path(&self.device.dir, &name);
                    match std::fs::write(&path, vec![0u8; len]) {
                        Ok(()) => {
                            self.device.record(format!("fdl2:erase {name}"));
                            self.reply(cmd::REP_ACK, &[]);
                        }
                        Err(_) => self.reply(cmd::REP_OPERATION_FAILED, &[]),
                    }
                }
                None => self.reply(cmd::REP_OPERATION_FAILED, &[]),
            },
            cmd::NORMAL_RESET | cmd::POWER_OFF => {
                self.device.record(format!("fdl2:{}", self.text(&frame)));
                self.reply(cmd::REP_ACK, &[]);
                return Flow::Reboot;
            }
            _ => self.reply(cmd::REP_INVALID_CMD, &[]),
        }
        Flow::Continue
    }

    /// The partition a name-and-size payload names, and the size; `None` for a malformed
    /// payload or a partition the device does not have.
    fn select(&self, payload: &[u8]) -> Option<(String, u64)> {
        let name = decode_name(payload.get(..NAME_LEN)?)?;
        self.device.size_of(&name)?;
        let lo = u64::from(le32(payload.get(NAME_LEN..NAME_LEN + 4)?));
        let hi = payload
            .get(NAME_LEN + 4..NAME_LEN + 8)
            .map_or(0, |b| u64::from(le32(b)));
        Some((name, lo | hi << 32))
    }

    fn midst(&mut self, payload: &[u8]) -> Flow {
        let Some(staged) = self.staged.as_mut() else {
            self.reply(cmd::REP_DOWN_NOT_START, &[]);
            return Flow::Continue;
        };
        if staged.data.len() as u64 + payload.len() as u64 > staged.size {
            self.reply(cmd::REP_DOWN_SIZE_ERROR, &[]);
            return Flow::Continue;
        }
        staged.data.extend_from_slice(payload);
        let complete = staged.data.len() as u64 == staged.size;
        if self.count(payload.len() as u64, 0) {
            self.staged = None;
            return Flow::Reboot;
        }
        if complete {
            let staged = self.staged.as_ref().expect("checked above");
            let path = partition_path(&self.device.dir, &staged.name);
            let stored = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|mut f| {
                    f.seek(SeekFrom::Start(0))?;
                    f.write_all(&staged.data)?;
                    f.sync_all()
                });
            if stored.is_err() {
                self.reply(cmd::REP_OPERATION_FAILED, &[]);
                return Flow::Continue;
            }
            if self.count(0, staged.size) {
                return Flow::Reboot;
            }
        }
        self.reply(cmd::REP_ACK, &[]);
        Flow::Continue
    }

    fn read_midst(&mut self, payload: &[u8]) {
        let Some((name, _)) = self.reading.clone() else {
            self.reply(cmd::REP_DOWN_NOT_START, &[]);
            return;
        };
        let (Some(len), Some(lo)) = (payload.get(..4), payload.get(4..8)) else {
            self.reply(cmd::REP_INVALID_CMD, &[]);
            return;
        };
        let len = u64::from(le32(len));
        let hi = payload.get(8..12).map_or(0, |b| u64::from(le32(b)));
        let offset = u64::from(le32(lo)) | hi << 32;
        let size = self.device.size_of(&name).unwrap_or(0);
        // Reads past the end fail: spd_dump's part_size finds a partition's size by them.
        if len > unisoc::MAX_PAYLOAD as u64 || offset.saturating_add(len) > size {
            self.reply(cmd::REP_OPERATION_FAILED, &[]);
            return;
        }
        let path = partition_path(&self.device.dir, &name);
        let mut data = vec![0u8; len as usize];
        let read = std::fs::File::open(&path).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut data)
        });
        match read {
            Ok(()) => {
                if let Some(r) = self.reading.as_mut() {
                    r.1 += len;
                }
                self.reply(cmd::REP_READ_FLASH, &data);
            }
            Err(_) => self.reply(cmd::REP_OPERATION_FAILED, &[]),
        }
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn be_pair(payload: &[u8]) -> Option<(u32, u32)> {
    let a = payload.get(..4)?;
    let b = payload.get(4..8)?;
    Some((
        u32::from_be_bytes([a[0], a[1], a[2], a[3]]),
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
    ))
}
