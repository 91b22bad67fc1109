//! The boot ROM (PBL): Sahara, from the first HELLO until the programmer runs.
//!
//! * HELLO goes out every [`HELLO_INTERVAL`] until a HELLO_RESP arrives: opening a tty
//!   flushes it, so a host that opens the port late has lost the first one.
//! * Mode 0 loads the programmer (image 13): ELF header, program headers, then the rest
//!   out of order (see `elf`). A refused image is answered with END_OF_IMAGE and the
//!   device stays in Sahara until the host sends RESET, as a real one does.
//! * Mode 3 (command mode, used by hosts to read chip identity) answers serial number,
//!   hardware id, OEM key hash and SBL version as the chip profile (`chip`) says, and
//!   leaves with SWITCH_MODE, after which the device starts over with a second HELLO. A
//!   profile without command mode answers the mode-3 HELLO_RESP with END_OF_IMAGE.
//! * RESET is answered with RESET_RESP and the device reboots into a fresh HELLO.
//!
//! A host that vanishes mid-transfer is noticed by the data timeout; the device then
//! starts over, as a boot ROM's watchdog would.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::protocol::sahara::identity::client_cmd;
use crate::protocol::sahara::{
    Packet, PacketReader, SaharaError, Status, MODE_COMMAND, MODE_IMAGE_TX_PENDING,
};
use crate::transport::TransportError;

use super::elf::{self, ELF32_HEADER_LEN, ELF64_HEADER_LEN};
use super::{Device, Line, PROGRAMMER_AUTH_FAILURE};

/// How often HELLO is repeated while nobody answers.
const HELLO_INTERVAL: Duration = Duration::from_millis(500);
/// Image id of a Firehose programmer.
const PROGRAMMER_IMAGE_ID: u32 = 13;
/// Largest command packet the device accepts, announced in HELLO.
const MAX_CMD_PACKET_LEN: u32 = 1024;
/// How long the device is away when it reboots.
pub(super) const REBOOT_TIME: Duration = Duration::from_millis(300);
const INVALID_HOST_MODE: Status = Status(0x18);
const EXEC_CMD_UNSUPPORTED: Status = Status(0x1F);
const EXEC_DATA_INVALID_CLIENT_CMD: Status = Status(0x20);

/// Runs Sahara until a programmer is loaded and started. Returns the bytes the host sent
/// right after DONE (the start of its first Firehose document), or `None` once the
/// simulator is stopping.
pub(super) fn run(device: &Device, pty: &mut dyn Line) -> Option<Vec<u8>> {
    let mut pbl = Pbl {
        device,
        pty,
        reader: PacketReader::new(),
    };
    loop {
        match pbl.session() {
            Ok(Some(pending)) => return Some(pending),
            Ok(None) => {}
            Err(_) if pbl.pty.stopping() => return None,
            Err(e) => {
                device.record(format!("sahara:abandoned {e}"));
                pbl.clear_line();
            }
        }
    }
}

struct Pbl<'a> {
    device: &'a Device,
    pty: &'a mut dyn Line,
    reader: PacketReader,
}

impl Pbl<'_> {
    /// One boot: HELLO, then what the host chose. `Some` once a programmer runs.
    fn session(&mut self) -> Result<Option<Vec<u8>>, SaharaError> {
        let Some(mode) = self.hello()? else {
            return Ok(None);
        };
        match mode {
            MODE_IMAGE_TX_PENDING => self.load_programmer(),
            MODE_COMMAND if self.device.cfg.chip.command_mode => self.command_mode().map(|()| None),
            _ => {
                self.end_of_image(0, INVALID_HOST_MODE)?;
                Ok(None)
            }
        }
    }

    /// Offers HELLO until the host answers; the mode it agreed to, or `None` to start over.
    fn hello(&mut self) -> Result<Option<u32>, SaharaError> {
        let hello = Packet::Hello {
            version: if self.device.cfg.read_data64 {
                self.device.cfg.chip.sahara_version.max(3)
            } else {
                self.device.cfg.chip.sahara_version
            },
            version_compatible: 1,
            max_cmd_packet_len: MAX_CMD_PACKET_LEN,
            mode: MODE_IMAGE_TX_PENDING,
        };
        self.device.record("sahara:hello".into());
        loop {
            match self.pty.write(&hello.encode(), HELLO_INTERVAL) {
                // Nobody has read the earlier ones; the next host's open flushes them.
                Err(TransportError::Timeout(_)) => {}
                other => other?,
            }
            match self.next_packet(HELLO_INTERVAL)? {
                Some(Packet::HelloResp {
                    version,
                    status,
                    mode,
                    ..
                }) => {
                    self.device.record(format!(
                        "sahara:hello-resp version={version} mode={mode} status={}",
                        status.0
                    ));
                    return Ok(status.is_success().then_some(mode));
                }
                Some(Packet::Reset) => {
                    self.reset()?;
                    return Ok(None);
                }
                Some(other) => self.ignore(&other),
                None => {}
            }
        }
    }

    /// Pulls the programmer in, checks it, and starts it on DONE.
    fn load_programmer(&mut self) -> Result<Option<Vec<u8>>, SaharaError> {
        let first = if self.device.cfg.read_data64 {
            ELF64_HEADER_LEN
        } else {
            ELF32_HEADER_LEN
        };
        let mut image = vec![0u8; first as usize];
        self.request(0, &mut image)?;
        let mut header = elf::parse_header(&image);
        if let Some(len) = header
            .as_ref()
            .ok()
            .filter(|h| !h.complete())
            .map(|h| h.len)
        {
            image.resize(len as usize, 0);
            self.request(first, &mut image[first as usize..])?;
            header = elf::parse_header(&image);
        }
        let header = match header {
            Ok(header) => header,
            Err(status) => return self.refuse(status),
        };
        let mut table = vec![0u8; (header.phdrs.end - header.phdrs.start) as usize];
        self.request(header.phdrs.start, &mut table)?;
        let segments = match header.segments(&table) {
            Ok(segments) => segments,
            Err(status) => return self.refuse(status),
        };
        let extent = segments
            .iter()
            .map(|s| s.end)
            .chain([header.len, header.phdrs.end])
            .max()
            .unwrap_or(header.len);
        image.resize(extent as usize, 0);
        for range in elf::read_order(extent, &segments) {
            self.request(
                range.start,
                &mut image[range.start as usize..range.end as usize],
            )?;
        }
        let digest: [u8; 32] = Sha256::digest(&image).into();
        self.device.record(format!(
            "sahara:programmer len={extent} sha256={}",
            hex::encode(digest)
        ));
        if self
            .device
            .cfg
            .programmer_sha256
            .is_some_and(|accepted| accepted != digest)
        {
            return self.refuse(PROGRAMMER_AUTH_FAILURE);
        }
        self.end_of_image(PROGRAMMER_IMAGE_ID, Status::SUCCESS)?;
        match self.next_packet(self.device.cfg.data_timeout)? {
            Some(Packet::Done) => {
                self.device.record("sahara:done".into());
                self.send(&Packet::DoneResp { image_tx_status: 1 })?;
                Ok(Some(self.reader.buffered().to_vec()))
            }
            Some(Packet::Reset) => self.reset().map(|()| None),
            Some(other) => {
                self.ignore(&other);
                Ok(None)
            }
            None => Err(TransportError::Timeout(self.device.cfg.data_timeout).into()),
        }
    }

    /// Asks the host for `out.len()` bytes of the programmer at `offset`.
    fn request(&mut self, offset: u64, out: &mut [u8]) -> Result<(), SaharaError> {
        let len = out.len() as u64;
        let (packet, name) = if self.device.cfg.read_data64 {
            let packet = Packet::ReadData64 {
                image_id: u64::from(PROGRAMMER_IMAGE_ID),
                offset,
                length: len,
            };
            (packet, "read-data64")
        } else {
            // The image is at most elf::MAX_IMAGE_LEN, far below 4 GiB.
            let packet = Packet::ReadData {
                image_id: PROGRAMMER_IMAGE_ID,
                offset: offset as u32,
                length: len as u32,
            };
            (packet, "read-data")
        };
        self.device.record(format!(
            "sahara:{name} image={PROGRAMMER_IMAGE_ID} offset={offset} len={len}"
        ));
        self.send(&packet)?;
        let timeout = self.device.cfg.data_timeout;
        self.reader.read_raw(&mut *self.pty, out, timeout)
    }

    /// Refuses the image and waits, in Sahara, for the host to reset the device.
    fn refuse(&mut self, status: Status) -> Result<Option<Vec<u8>>, SaharaError> {
        self.end_of_image(PROGRAMMER_IMAGE_ID, status)?;
        loop {
            match self.next_packet(self.device.cfg.data_timeout)? {
                Some(Packet::Reset) => return self.reset().map(|()| None),
                Some(Packet::ResetStateMachine) => {
                    self.device.record("sahara:reset-state-machine".into());
                    return Ok(None);
                }
                Some(other) => self.ignore(&other),
                None => {}
            }
        }
    }

    /// Command mode: identity queries until SWITCH_MODE or RESET.
    fn command_mode(&mut self) -> Result<(), SaharaError> {
        self.send(&Packet::CmdReady)?;
        let mut answer: Option<(u32, Vec<u8>)> = None;
        loop {
            match self.next_packet(self.device.cfg.data_timeout)? {
                Some(Packet::Execute { client_cmd }) => {
                    self.device
                        .record(format!("sahara:execute cmd={client_cmd:#04x}"));
                    match self.client_data(client_cmd) {
                        Some(data) => {
                            self.send(&Packet::ExecuteResp {
                                client_cmd,
                                data_len: data.len() as u32,
                            })?;
                            answer = Some((client_cmd, data));
                        }
                        None => self.end_of_image(0, EXEC_CMD_UNSUPPORTED)?,
                    }
                }
                Some(Packet::ExecuteData { client_cmd }) => match answer.take() {
                    Some((cmd, data)) if cmd == client_cmd => {
                        let timeout = self.device.cfg.data_timeout;
                        self.pty.write(&data, timeout)?;
                    }
                    _ => self.end_of_image(0, EXEC_DATA_INVALID_CLIENT_CMD)?,
                },
                Some(Packet::SwitchMode { mode }) => {
                    self.device
                        .record(format!("sahara:switch-mode mode={mode}"));
                    return Ok(());
                }
                Some(Packet::Reset) => return self.reset(),
                Some(other) => self.ignore(&other),
                None => {}
            }
        }
    }

    /// The answer to a command-mode query, as the device's chip profile says.
    fn client_data(&self, cmd: u32) -> Option<Vec<u8>> {
        let cfg = &self.device.cfg;
        let chip = &cfg.chip;
        match cmd {
            client_cmd::SERIAL_NUM_READ => Some(chip.serial_answer(&cfg.serial)),
            client_cmd::MSM_HW_ID_READ if chip.sahara_version < 3 => {
                chip.hwid.map(|id| id.to_le_bytes().to_vec())
            }
            client_cmd::READ_CHIP_ID_V3 if chip.sahara_version >= 3 => chip.chip_id_v3(),
            client_cmd::OEM_PK_HASH_READ => Some(chip.pk_hash.clone()),
            client_cmd::GET_SOFTWARE_VERSION_SBL => Some(vec![0; 4]),
            _ => None,
        }
    }

    /// RESET: acknowledge, then reboot (the host's pending bytes are lost).
    fn reset(&mut self) -> Result<(), SaharaError> {
        self.device.record("sahara:reset".into());
        self.send(&Packet::ResetResp)?;
        self.pty.pause(REBOOT_TIME);
        self.clear_line();
        Ok(())
    }

    fn end_of_image(&mut self, image_id: u32, status: Status) -> Result<(), SaharaError> {
        self.device.record(format!(
            "sahara:end-of-image image={image_id} status={:#x}",
            status.0
        ));
        self.send(&Packet::EndOfImage { image_id, status })
    }

    fn send(&mut self, packet: &Packet) -> Result<(), SaharaError> {
        let timeout = self.device.cfg.data_timeout;
        Ok(self.pty.write(&packet.encode(), timeout)?)
    }

    /// The next valid packet, or `None` after `timeout` or after garbage (which is
    /// dropped, with whatever else is pending, as a boot ROM drops a bad transfer).
    fn next_packet(&mut self, timeout: Duration) -> Result<Option<Packet>, SaharaError> {
        match self.reader.read_packet(&mut *self.pty, timeout) {
            Ok(packet) => Ok(Some(packet)),
            Err(SaharaError::Transport(TransportError::Timeout(_))) => {
                if !self.reader.buffered().is_empty() {
                    // Half a packet and then silence: its sender is gone.
                    self.device.record(format!(
                        "sahara:dropped {} stray bytes",
                        self.reader.buffered().len()
                    ));
                    self.reader = PacketReader::new();
                }
                Ok(None)
            }
            Err(SaharaError::Transport(e)) => Err(e.into()),
            Err(e) => {
                self.device.record(format!("sahara:garbage {e}"));
                self.clear_line();
                Ok(None)
            }
        }
    }

    fn ignore(&self, packet: &Packet) {
        self.device
            .record(format!("sahara:ignored {}", packet.name()));
    }

    /// Forgets everything received and not yet handled.
    fn clear_line(&mut self) {
        self.pty.discard_input();
        self.reader = PacketReader::new();
    }
}
