//! The virtual EDL device, driven by a scripted host that speaks Sahara and Firehose with
//! the protocol codecs over the pseudo-terminal, as a host on a real EDL port would.
#![cfg(unix)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use sha2::{Digest, Sha256};

use flashline::device::bench;
use flashline::protocol::firehose::{
    Command, Configure, DeviceDoc, DocReader, FirehoseError, Patch, PowerAction, Response,
    SectorRange,
};
use flashline::protocol::gpt::{Gpt, GptHeader};
use flashline::protocol::sahara::{
    read_identity, upload_programmer, ChipIdentity, Hwid, Packet, PacketReader, SaharaOptions,
    SaharaOutcome, Status,
};
use flashline::sim::edl::{
    build_test_programmer, virtual_pk_hash, ChipProfile, EdlConfig, EdlSim, IdentityData, PartSpec,
    RunningEdl, PROGRAMMER_AUTH_FAILURE, VIRTUAL_HWID,
};
use flashline::transport::{Transport, TransportError};

const WAIT: Duration = Duration::from_secs(3);

/// The host's end of the line.
struct Link {
    port: TTYPort,
    address: String,
}

impl Transport for Link {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        self.port
            .set_timeout(timeout)
            .map_err(std::io::Error::from)?;
        Ok(self.port.write_all(data)?)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.port
            .set_timeout(timeout)
            .map_err(std::io::Error::from)?;
        match self.port.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(TransportError::Timeout(timeout))
            }
            other => Ok(other?),
        }
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.port.set_exclusive(false);
    }
}

/// A scripted host: Sahara first, then Firehose.
struct Host {
    link: Link,
    packets: PacketReader,
    docs: DocReader,
}

/// What a programmer upload looked like from the host.
struct Upload {
    /// (offset, length) of every READ_DATA/READ_DATA64, in order.
    requests: Vec<(u64, u64)>,
    /// The END_OF_IMAGE status.
    status: Status,
}

impl Host {
    fn open(address: &str) -> Host {
        let path = address.strip_prefix("serial:").unwrap();
        let port = serialport::new(path, 115_200)
            .timeout(WAIT)
            .open_native()
            .unwrap();
        Host {
            link: Link {
                port,
                address: address.to_string(),
            },
            packets: PacketReader::new(),
            docs: DocReader::new(),
        }
    }

    fn packet(&mut self) -> Packet {
        self.packets.read_packet(&mut self.link, WAIT).unwrap()
    }

    fn send(&mut self, packet: &Packet) {
        self.link.write(&packet.encode(), WAIT).unwrap();
    }

    /// Waits for HELLO and answers it for `mode`; returns the HELLO's version.
    fn hello(&mut self, mode: u32) -> u32 {
        let Packet::Hello { version, .. } = self.packet() else {
            panic!("expected HELLO");
        };
        self.send(&Packet::HelloResp {
            version: 2,
            version_compatible: 1,
            status: Status::SUCCESS,
            mode,
        });
        version
    }

    /// Serves `image` to the device until END_OF_IMAGE; on success sends DONE and checks
    /// DONE_RESP, after which the line speaks Firehose.
    fn upload(&mut self, image: &[u8]) -> Upload {
        let mut requests = Vec::new();
        loop {
            let (offset, len) = match self.packet() {
                Packet::ReadData {
                    image_id: 13,
                    offset,
                    length,
                } => (u64::from(offset), u64::from(length)),
                Packet::ReadData64 {
                    image_id: 13,
                    offset,
                    length,
                } => (offset, length),
                Packet::EndOfImage { image_id, status } => {
                    assert_eq!(image_id, 13);
                    if status.is_success() {
                        self.send(&Packet::Done);
                        assert_eq!(self.packet(), Packet::DoneResp { image_tx_status: 1 });
                        self.docs = DocReader::with_pending(self.packets.buffered());
                    }
                    return Upload { requests, status };
                }
                other => panic!("unexpected {other:?}"),
            };
            requests.push((offset, len));
            let piece = &image[offset as usize..(offset + len) as usize];
            self.link.write(piece, WAIT).unwrap();
        }
    }

    /// Sends a command and collects logs until its response.
    fn command(&mut self, command: &Command) -> (Vec<String>, Response) {
        self.send_xml(&command.to_xml());
        self.response()
    }

    fn send_xml(&mut self, xml: &str) {
        self.link.write(xml.as_bytes(), WAIT).unwrap();
    }

    fn response(&mut self) -> (Vec<String>, Response) {
        let mut logs = Vec::new();
        loop {
            let doc = self.docs.next_document(&mut self.link, WAIT).unwrap();
            let doc = DeviceDoc::parse(&doc).unwrap();
            logs.extend(doc.logs);
            if let Some(response) = doc.response {
                return (logs, response);
            }
        }
    }

    /// Log lines that come after a response, until the device has been quiet a while.
    fn drain(&mut self) -> Vec<String> {
        let mut logs = Vec::new();
        loop {
            match self
                .docs
                .next_document(&mut self.link, Duration::from_millis(150))
            {
                Ok(doc) => {
                    let doc = DeviceDoc::parse(&doc).unwrap();
                    assert!(doc.response.is_none(), "a stray response: {doc:?}");
                    logs.extend(doc.logs);
                }
                Err(FirehoseError::Transport(TransportError::Timeout(_))) => return logs,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// A command that must be ACKed; late logs are drained.
    fn ack(&mut self, command: &Command) -> (Vec<String>, Response) {
        let (mut logs, response) = self.command(command);
        assert!(response.ack, "{command:?} was NAKed: {logs:?}");
        logs.extend(self.drain());
        (logs, response)
    }

    /// A command that must be NAKed; returns the device's logs.
    fn nak(&mut self, command: &Command) -> Vec<String> {
        let (logs, response) = self.command(command);
        assert!(!response.ack, "{command:?} was ACKed");
        logs
    }

    fn configure(&mut self) {
        self.ack(&Command::Configure(Configure {
            memory_name: "eMMC".into(),
            max_payload_to_target: 1024 * 1024,
            verbose: false,
            zlp_aware_host: true,
            skip_storage_init: false,
        }));
    }

    fn program(&mut self, range: SectorRange, data: &[u8]) {
        let (logs, response) = self.command(&Command::Program(range));
        assert!(response.ack && response.rawmode(), "{logs:?}");
        for piece in data.chunks(3000) {
            self.link.write(piece, WAIT).unwrap();
        }
        let (logs, response) = self.response();
        assert!(response.ack, "{logs:?}");
        self.drain();
    }

    fn read(&mut self, range: SectorRange) -> Vec<u8> {
        let (logs, response) = self.command(&Command::Read(range));
        assert!(response.ack && response.rawmode(), "{logs:?}");
        let mut data = vec![0u8; range.byte_len().unwrap() as usize];
        let mut got = 0;
        while got < data.len() {
            got += self
                .docs
                .read_raw(&mut self.link, &mut data[got..], WAIT)
                .unwrap();
        }
        let (logs, response) = self.response();
        assert!(response.ack, "{logs:?}");
        data
    }

    fn digest(&mut self, range: SectorRange) -> String {
        let (logs, _) = self.ack(&Command::GetSha256Digest(range));
        logs.iter()
            .find_map(|l| l.strip_prefix("Digest "))
            .expect("a Digest log")
            .to_ascii_lowercase()
    }
}

fn range(lun: u32, start_sector: u64, num_sectors: u64) -> SectorRange {
    SectorRange {
        lun,
        start_sector,
        sector_size: 512,
        num_sectors,
    }
}

fn programmer() -> Vec<u8> {
    let payload: Vec<u8> = (0..12_345u32).map(|i| (i * 7 + i / 251) as u8).collect();
    build_test_programmer(&payload)
}

/// Starts a device and brings a host into its programmer, configured.
fn firehose(dir: &Path, cfg: EdlConfig) -> (RunningEdl, Host) {
    let sim = EdlSim::start(dir, cfg, None).unwrap();
    let mut host = Host::open(sim.address());
    host.hello(0);
    let upload = host.upload(&programmer());
    assert_eq!(upload.status, Status::SUCCESS);
    host.drain();
    host.configure();
    (sim, host)
}

fn file_bytes(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut out = vec![0u8; len];
    file.read_exact(&mut out).unwrap();
    out
}

fn file_sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

#[test]
fn hello_is_resent_until_answered() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), None).unwrap();
    // Let the device queue HELLOs nobody reads; opening the port flushes them.
    std::thread::sleep(Duration::from_millis(200));
    let mut host = Host::open(sim.address());
    let started = Instant::now();
    let mut hellos = 0;
    while hellos < 2 {
        let Packet::Hello {
            version,
            version_compatible,
            mode,
            ..
        } = host.packet()
        else {
            panic!("expected HELLO");
        };
        assert_eq!((version, version_compatible, mode), (2, 1, 0));
        hellos += 1;
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    host.send(&Packet::HelloResp {
        version: 2,
        version_compatible: 1,
        status: Status::SUCCESS,
        mode: 0,
    });
    // The device now asks for the programmer instead of repeating HELLO.
    assert!(matches!(
        host.packet(),
        Packet::ReadData {
            image_id: 13,
            offset: 0,
            length: 52
        }
    ));
    assert!(sim
        .commands()
        .contains(&"sahara:hello-resp version=2 mode=0 status=0".to_string()));
}

#[test]
fn programmer_is_read_whole_out_of_order_and_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let image = programmer();
    let digest: [u8; 32] = Sha256::digest(&image).into();
    let cfg = EdlConfig {
        programmer_sha256: Some(digest),
        ..EdlConfig::default()
    };
    let sim = EdlSim::start(dir.path(), cfg, None).unwrap();
    let mut host = Host::open(sim.address());
    assert_eq!(host.hello(0), 2);
    let upload = host.upload(&image);
    assert_eq!(upload.status, Status::SUCCESS);
    assert_eq!(upload.requests[0], (0, 52), "ELF header first");
    assert!(upload.requests.iter().all(|&(_, len)| len <= 4096));
    let offsets: Vec<u64> = upload.requests.iter().map(|r| r.0).collect();
    let mut sorted = offsets.clone();
    sorted.sort();
    assert_ne!(offsets, sorted, "a boot ROM does not read sequentially");
    let mut covered = vec![false; image.len()];
    for (offset, len) in &upload.requests {
        covered[*offset as usize..(offset + len) as usize].fill(true);
    }
    assert!(covered.iter().all(|&c| c), "every byte was read");

    let log = sim.commands();
    let expected = format!(
        "sahara:programmer len={} sha256={}",
        image.len(),
        hex::encode(digest)
    );
    assert!(log.contains(&expected), "{log:?}");
    assert!(log.contains(&"sahara:read-data image=13 offset=0 len=52".to_string()));
    assert!(log.contains(&"sahara:done".to_string()));

    // The programmer runs now: it says hello and answers Firehose.
    let startup = host.drain();
    assert!(!startup.is_empty(), "a chatty programmer logs at start-up");
    host.ack(&Command::Nop);
}

#[test]
fn a_secure_device_refuses_another_programmer_and_waits_for_reset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        programmer_sha256: Some([0x11; 32]),
        ..EdlConfig::default()
    };
    let sim = EdlSim::start(dir.path(), cfg, None).unwrap();
    let mut host = Host::open(sim.address());
    host.hello(0);
    let upload = host.upload(&programmer());
    assert_eq!(upload.status, PROGRAMMER_AUTH_FAILURE);
    assert_eq!(upload.status.name(), Some("IMAGE_AUTH_FAILURE"));

    // It stays in Sahara, silent, until reset; then it boots into a fresh HELLO.
    let mut probe = [0u8; 1];
    assert!(matches!(
        host.link.read(&mut probe, Duration::from_millis(700)),
        Err(TransportError::Timeout(_))
    ));
    host.send(&Packet::Reset);
    assert_eq!(host.packet(), Packet::ResetResp);
    assert!(matches!(host.packet(), Packet::Hello { .. }));
    let log = sim.commands();
    assert!(log.contains(&"sahara:end-of-image image=13 status=0x25".to_string()));
    assert!(log.contains(&"sahara:reset".to_string()));
}

#[test]
fn non_elf_and_empty_programmers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), None).unwrap();
    let mut host = Host::open(sim.address());
    host.hello(0);
    assert_eq!(
        host.upload(&[0x5A; 4096]).status.name(),
        Some("INVALID_ELF_HDR")
    );
    host.send(&Packet::Reset);
    assert_eq!(host.packet(), Packet::ResetResp);
    host.hello(0);
    let empty = build_test_programmer(&[]);
    assert_eq!(host.upload(&empty).status.name(), Some("INVALID_ELF_HDR"));
}

#[test]
fn read_data64_devices_speak_sahara_3() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        read_data64: true,
        late_logs: false,
        ..EdlConfig::default()
    };
    let sim = EdlSim::start(dir.path(), cfg, None).unwrap();
    let mut host = Host::open(sim.address());
    assert_eq!(host.hello(0), 3);
    let image = programmer();
    let upload = host.upload(&image);
    assert_eq!(upload.status, Status::SUCCESS);
    assert_eq!(upload.requests[0], (0, 64));
    assert!(sim
        .commands()
        .contains(&"sahara:read-data64 image=13 offset=0 len=64".to_string()));
    assert!(host.drain().is_empty(), "late logs are off");
    host.ack(&Command::Nop);
}

#[test]
fn command_mode_reports_identity_then_switches_to_image_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), None).unwrap();
    let mut host = Host::open(sim.address());
    host.hello(3);
    assert_eq!(host.packet(), Packet::CmdReady);
    for (cmd, len) in [(1u32, 4u32), (2, 8), (3, 32)] {
        host.send(&Packet::Execute { client_cmd: cmd });
        assert_eq!(
            host.packet(),
            Packet::ExecuteResp {
                client_cmd: cmd,
                data_len: len
            }
        );
        host.send(&Packet::ExecuteData { client_cmd: cmd });
        let mut data = vec![0u8; len as usize];
        host.packets
            .read_raw(&mut host.link, &mut data, WAIT)
            .unwrap();
    }
    host.send(&Packet::SwitchMode { mode: 0 });
    host.hello(0);
    assert_eq!(host.upload(&programmer()).status, Status::SUCCESS);
}

/// The host's command-mode reader against a profile, then an upload on the same link: the
/// second HELLO after command mode must be answered for image transfer.
fn identity_then_upload(chip: ChipProfile) -> (ChipIdentity, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        chip,
        late_logs: false,
        ..EdlConfig::default()
    };
    let sim = EdlSim::start(dir.path(), cfg, None).unwrap();
    let mut host = Host::open(sim.address());
    let options = SaharaOptions {
        hello_timeout: WAIT,
        ..SaharaOptions::default()
    };
    let identity = read_identity(&mut host.link, &options).unwrap();
    let image = programmer();
    let outcome = upload_programmer(
        &mut host.link,
        &mut std::io::Cursor::new(&image),
        image.len() as u64,
        &options,
        &mut |_| {},
    )
    .unwrap();
    assert!(matches!(outcome, SaharaOutcome::Uploaded { .. }));
    host.ack(&Command::Nop);
    (identity, sim.commands())
}

#[test]
fn the_host_reads_chip_identity_from_every_rom_profile() {
    // Sahara 2: every query answered.
    let (id, log) = identity_then_upload(ChipProfile::default());
    assert_eq!(id.sahara_version, 2);
    assert_eq!(id.hwid, Some(Hwid(VIRTUAL_HWID)));
    assert_eq!(id.pk_hash, Some(hex::encode(virtual_pk_hash())));
    assert_eq!(
        id.serial,
        Some(u64::from(ChipProfile::derived_serial("FLMODEM0001")))
    );
    assert_eq!(id.sbl_version, Some(0));
    assert!(!id.command_mode_refused);
    assert!(
        log.contains(&"sahara:switch-mode mode=0".to_string()),
        "{log:?}"
    );

    // Sahara 3: no MSM_HW_ID_READ, the id from READ_CHIP_ID_V3, a 64-bit serial, a
    // SHA-384 hash followed by 48 zero bytes.
    let v3 = ChipProfile::sahara_v3();
    let (id, log) = identity_then_upload(v3.clone());
    assert_eq!(id.sahara_version, 3);
    assert_eq!(id.hwid, Some(Hwid(VIRTUAL_HWID)));
    assert_eq!(id.serial, Some(0x0123_4567_89AB_CDEF));
    assert_eq!(id.pk_hash, Some(hex::encode(&v3.pk_hash[..48])));
    assert!(
        log.contains(&"sahara:execute cmd=0x0a".to_string()),
        "{log:?}"
    );

    // A v3 ROM that reports no hardware id at all, and a placeholder serial.
    let (id, _) = identity_then_upload(ChipProfile {
        hwid: None,
        serial: Some(0x1234u32.to_le_bytes().to_vec()),
        ..ChipProfile::sahara_v3()
    });
    assert_eq!((id.hwid, id.serial), (None, None));
    assert!(id.pk_hash.is_some());

    // A ROM that refuses command mode: nothing known, and the upload still works.
    let (id, _) = identity_then_upload(ChipProfile {
        command_mode: false,
        ..ChipProfile::default()
    });
    assert!(id.command_mode_refused);
    assert_eq!((id.hwid, id.serial, id.pk_hash), (None, None, None));
}

#[test]
fn configure_checks_storage_type_and_negotiates_payload() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), None).unwrap();
    let mut host = Host::open(sim.address());
    host.hello(0);
    host.upload(&programmer());
    host.drain();

    let configure = |memory_name: &str, max_payload_to_target| {
        Command::Configure(Configure {
            memory_name: memory_name.into(),
            max_payload_to_target,
            verbose: false,
            zlp_aware_host: true,
            skip_storage_init: false,
        })
    };
    let logs = host.nak(&Command::Read(range(0, 0, 1)));
    assert!(logs[0].contains("configure"), "{logs:?}");
    let logs = host.nak(&configure("UFS", 1 << 20));
    assert_eq!(
        logs,
        vec!["Not support configure MemoryName UFS".to_string()]
    );

    let (_, response) = host.command(&configure("emmc", 16 << 20));
    assert!(!response.ack);
    assert_eq!(
        response.get("MaxPayloadSizeToTargetInBytes"),
        Some("1048576")
    );
    let (_, response) = host.ack(&configure("EMMC", 65536));
    assert_eq!(response.get("MaxPayloadSizeToTargetInBytes"), Some("65536"));
    assert_eq!(
        response.get("MaxPayloadSizeToTargetInBytesSupported"),
        Some("1048576")
    );
    assert_eq!(response.get("MaxXMLSizeInBytes"), Some("4096"));
}

#[test]
fn program_read_digest_erase_and_patch() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut host) = firehose(dir.path(), EdlConfig::default());
    let lun0 = sim.lun_path(0);
    let boot = Gpt::parse(512, &file_bytes(&lun0, 0, 34 * 512))
        .unwrap()
        .find("boot")
        .unwrap()
        .clone();

    let data: Vec<u8> = (0..8 * 512u32).map(|i| (i % 253) as u8).collect();
    host.program(range(0, boot.first_lba, 8), &data);
    assert_eq!(file_bytes(&lun0, boot.first_lba * 512, data.len()), data);
    assert_eq!(host.read(range(0, boot.first_lba, 8)), data);
    assert_eq!(
        host.digest(range(0, boot.first_lba, 8)),
        hex::encode(Sha256::digest(&data))
    );
    let whole_lun = host.digest(range(0, 0, 64 * 1024 * 2));
    assert_eq!(whole_lun, hex::encode(file_sha256(&lun0)));

    host.ack(&Command::Patch(Patch {
        lun: 0,
        sector_size: 512,
        start_sector: boot.first_lba + 1,
        byte_offset: 10,
        size_in_bytes: 4,
        value: 0xDEAD_BEEF,
    }));
    let at = (boot.first_lba + 1) * 512 + 10;
    assert_eq!(file_bytes(&lun0, at, 4), 0xDEAD_BEEFu32.to_le_bytes());

    host.ack(&Command::Erase(range(0, boot.first_lba + 2, 2)));
    let after = file_bytes(&lun0, boot.first_lba * 512, data.len());
    assert!(after[1024..2048].iter().all(|&b| b == 0));
    assert_eq!(after[2048..], data[2048..]);
    assert_eq!(after[..512], data[..512]);

    let log = sim.commands();
    let programmed = format!("firehose:program lun=0 start={} sectors=8", boot.first_lba);
    assert!(log.contains(&programmed), "{log:?}");
}

#[test]
fn storage_info_and_whole_lun_erase() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        luns: vec![64 * 1024 * 2, 2048],
        ..EdlConfig::default()
    };
    let (sim, mut host) = firehose(dir.path(), cfg);
    let (logs, _) = host.ack(&Command::GetStorageInfo { lun: 1 });
    let json = logs
        .iter()
        .find_map(|l| l.strip_prefix("INFO: "))
        .expect("storage info log");
    let info: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(info["storage_info"]["total_blocks"], 2048);
    assert_eq!(info["storage_info"]["block_size"], 512);
    assert_eq!(info["storage_info"]["num_physical"], 2);
    host.nak(&Command::GetStorageInfo { lun: 2 });

    // LUN 1 holds just a GPT; erasing all of it leaves zeros.
    assert!(file_bytes(&sim.lun_path(1), 512, 8).starts_with(b"EFI PART"));
    host.ack(&Command::EraseAll {
        lun: 1,
        sector_size: 512,
    });
    assert!(std::fs::read(sim.lun_path(1))
        .unwrap()
        .iter()
        .all(|&b| b == 0));
    assert_eq!(
        std::fs::metadata(sim.lun_path(1)).unwrap().len(),
        2048 * 512
    );
}

#[test]
fn refused_commands_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut host) = firehose(dir.path(), EdlConfig::default());
    let lun0 = sim.lun_path(0);
    let before = file_sha256(&lun0);
    let last = 64 * 1024 * 2;

    let logs = host.nak(&Command::Program(range(0, last - 4, 8)));
    assert!(logs[0].contains("beyond the end of LUN 0"), "{logs:?}");
    host.nak(&Command::Program(range(0, u64::MAX, 2)));
    host.nak(&Command::Program(range(0, 100, 0)));
    host.nak(&Command::Program(range(3, 0, 1)));
    let logs = host.nak(&Command::Program(SectorRange {
        sector_size: 4096,
        ..range(0, 100, 1)
    }));
    assert!(logs[0].contains("SECTOR_SIZE_IN_BYTES 4096"), "{logs:?}");
    host.nak(&Command::Read(range(0, last, 1)));
    host.nak(&Command::Erase(range(0, last - 1, 2)));
    host.nak(&Command::Patch(Patch {
        lun: 0,
        sector_size: 512,
        start_sector: last - 1,
        byte_offset: 510,
        size_in_bytes: 4,
        value: 1,
    }));
    host.nak(&Command::Patch(Patch {
        lun: 0,
        sector_size: 512,
        start_sector: 40,
        byte_offset: 0,
        size_in_bytes: 2,
        value: 0x1_0000,
    }));
    let logs = host.nak(&Command::Unknown { tag: "peek".into() });
    assert!(logs[0].contains("<peek>"), "{logs:?}");
    host.send_xml(
        r#"<?xml version="1.0" ?><data><patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="gpt_main0.bin" physical_partition_number="0" size_in_bytes="4" start_sector="1" value="0" /></data>"#,
    );
    assert!(!host.response().1.ack, "only DISK patches reach a device");
    let padding = "x".repeat(5000);
    host.send_xml(&format!(
        r#"<?xml version="1.0" ?><data><nop pad="{padding}" /></data>"#
    ));
    let (logs, response) = host.response();
    assert!(
        !response.ack && logs[0].contains("MaxXMLSizeInBytes"),
        "{logs:?}"
    );

    assert_eq!(file_sha256(&lun0), before);
    host.ack(&Command::Nop);
}

#[test]
fn new_luns_hold_a_gpt_and_identity_data_that_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig::default();
    let (sim, mut host) = firehose(dir.path(), cfg.clone());
    let gpt = Gpt::parse(512, &host.read(range(0, 0, 34))).unwrap();
    let labels: Vec<&str> = gpt.partitions.iter().map(|p| p.label.as_str()).collect();
    let expected: Vec<&str> = cfg.partitions.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, expected);
    let mut lba = gpt.first_usable_lba;
    assert_eq!(lba, 34);
    for (part, spec) in gpt.partitions.iter().zip(&cfg.partitions) {
        assert_eq!((part.first_lba, part.sectors()), (lba, spec.sectors));
        lba += spec.sectors;
    }
    // The backup header at the last sector describes the same table.
    let last = 64 * 1024 * 2 - 1;
    let backup = GptHeader::parse(&host.read(range(0, last, 1)), 512, last).unwrap();
    let entries = host.read(range(0, backup.entries_lba, backup.entry_sectors()));
    assert_eq!(backup.parse_entries(&entries).unwrap(), gpt.partitions);

    for label in &cfg.identity_labels {
        let part = gpt.find(label).unwrap();
        let mut expected = Vec::new();
        IdentityData::new(&cfg.serial, label, part.sectors() * 512)
            .read_to_end(&mut expected)
            .unwrap();
        let read = host.read(range(0, part.first_lba, part.sectors()));
        assert!(read.starts_with(
            format!("FLASHLINE-IDENTITY serial=FLMODEM0001 part={label} offset=0\n").as_bytes()
        ));
        assert!(read == expected, "{label} differs");
    }
    let modem = gpt.find("modem").unwrap();
    assert!(host
        .read(range(0, modem.first_lba, 4))
        .iter()
        .all(|&b| b == 0));
    drop(sim);
}

#[test]
fn ufs_devices_have_4096_byte_sectors_and_several_luns() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig::ufs();
    let sim = EdlSim::start(dir.path(), cfg.clone(), None).unwrap();
    for (lun, &sectors) in cfg.luns.iter().enumerate() {
        let path = sim.lun_path(lun);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), sectors * 4096);
        let gpt = Gpt::parse(4096, &file_bytes(&path, 0, 6 * 4096)).unwrap();
        assert_eq!(gpt.first_usable_lba, 6);
        assert_eq!(gpt.disk_sectors, sectors);
        let on_lun: Vec<&PartSpec> = cfg
            .partitions
            .iter()
            .filter(|p| p.lun as usize == lun)
            .collect();
        assert_eq!(gpt.partitions.len(), on_lun.len());
    }
    let mut host = Host::open(sim.address());
    host.hello(0);
    host.upload(&programmer());
    host.drain();
    host.ack(&Command::Configure(Configure {
        memory_name: "ufs".into(),
        max_payload_to_target: 1 << 20,
        verbose: false,
        zlp_aware_host: true,
        skip_storage_init: false,
    }));
    let data = vec![0x3C; 4096 * 2];
    host.program(
        SectorRange {
            sector_size: 4096,
            ..range(1, 20, 2)
        },
        &data,
    );
    assert_eq!(file_bytes(&sim.lun_path(1), 20 * 4096, data.len()), data);
    host.nak(&Command::Read(range(1, 20, 1)));
}

#[test]
fn existing_luns_are_kept_and_wrong_sizes_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        luns: vec![64 * 1024 * 2, 100],
        ..EdlConfig::default()
    };
    EdlSim::new(dir.path(), cfg.clone(), None).unwrap();
    let lun1 = dir.path().join("lun1.img");
    let mut file = std::fs::OpenOptions::new().write(true).open(&lun1).unwrap();
    file.write_all(b"no GPT any more").unwrap();
    drop(file);
    let before = file_sha256(&dir.path().join("lun0.img"));

    EdlSim::new(dir.path(), cfg.clone(), None).unwrap();
    assert!(file_bytes(&lun1, 0, 15) == b"no GPT any more");
    assert_eq!(file_sha256(&dir.path().join("lun0.img")), before);

    let bigger = EdlConfig {
        luns: vec![64 * 1024 * 2, 200],
        ..cfg
    };
    let err = EdlSim::new(dir.path(), bigger, None).err().unwrap();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("LUN 1"), "{err}");
}

#[test]
fn host_vanishing_mid_program_keeps_the_partial_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EdlConfig {
        data_timeout: Duration::from_millis(300),
        ..EdlConfig::default()
    };
    let (sim, mut host) = firehose(dir.path(), cfg);
    let (logs, response) = host.command(&Command::Program(range(0, 200, 16)));
    assert!(response.rawmode(), "{logs:?}");
    let half = vec![0xEE; 8 * 512];
    host.link.write(&half, WAIT).unwrap();
    drop(host);

    std::thread::sleep(Duration::from_millis(600));
    let log = sim.commands();
    assert!(
        log.iter()
            .any(|l| l.starts_with("firehose:program aborted after 4096 of 8192 bytes")),
        "{log:?}"
    );
    let lun0 = sim.lun_path(0);
    assert_eq!(file_bytes(&lun0, 200 * 512, 4096), half);
    assert!(file_bytes(&lun0, 208 * 512, 4096).iter().all(|&b| b == 0));

    // The programmer still runs for the next host.
    let mut host = Host::open(sim.address());
    host.ack(&Command::Nop);
}

#[test]
fn power_reset_returns_to_sahara_with_luns_kept() {
    let dir = tempfile::tempdir().unwrap();
    let bench_dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), Some(bench_dir.path())).unwrap();
    let listed = bench::list(bench_dir.path());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].address, sim.address());
    assert_eq!((listed[0].vid, listed[0].pid), (0x05c6, 0x9008));
    assert_eq!(listed[0].serial, "FLMODEM0001");

    let mut host = Host::open(sim.address());
    host.hello(0);
    host.upload(&programmer());
    host.drain();
    host.configure();
    host.program(range(0, 300, 1), &[0x42; 512]);
    host.ack(&Command::Power {
        action: PowerAction::Reset,
        delay_seconds: None,
    });
    drop(host);

    let mut host = Host::open(sim.address());
    host.hello(0);
    assert_eq!(host.upload(&programmer()).status, Status::SUCCESS);
    host.drain();
    host.configure();
    assert_eq!(host.read(range(0, 300, 1)), vec![0x42; 512]);
    assert!(sim.commands().contains(&"firehose:power reset".to_string()));

    sim.stop();
    assert!(bench::list(bench_dir.path()).is_empty());
}

#[test]
fn stop_is_prompt_in_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let sim = EdlSim::start(dir.path(), EdlConfig::default(), None).unwrap();
    let started = Instant::now();
    sim.stop();
    assert!(started.elapsed() < Duration::from_secs(1));

    let (sim, host) = firehose(dir.path(), EdlConfig::default());
    let started = Instant::now();
    sim.stop();
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(host);
}

#[test]
fn the_host_clients_flash_the_device() {
    use flashline::protocol::firehose::client::FirehoseClient;
    use flashline::protocol::sahara::client::{upload_programmer, SaharaOptions, SaharaOutcome};

    let dir = tempfile::tempdir().unwrap();
    let image = programmer();
    let cfg = EdlConfig {
        programmer_sha256: Some(Sha256::digest(&image).into()),
        ..EdlConfig::default()
    };
    let sim = EdlSim::start(dir.path(), cfg, None).unwrap();
    let mut link = Host::open(sim.address()).link;
    let outcome = upload_programmer(
        &mut link,
        &mut std::io::Cursor::new(&image),
        image.len() as u64,
        &SaharaOptions::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(matches!(outcome, SaharaOutcome::Uploaded { .. }));

    let mut client = FirehoseClient::new(link);
    let config = client.configure("emmc", 4 << 20).unwrap();
    assert_eq!(config.max_payload_to_target, 1 << 20);
    let info = client.storage_info(0).unwrap();
    assert_eq!((info.total_blocks, info.block_size), (64 * 1024 * 2, 512));
    let data: Vec<u8> = (0..64 * 512u32).map(|i| (i / 3) as u8).collect();
    client
        .program(&range(0, 5000, 64), &mut &data[..], &mut |_| {})
        .unwrap();
    let mut back = Vec::new();
    client
        .read(&range(0, 5000, 64), &mut back, &mut |_| {})
        .unwrap();
    assert!(back == data);
    let digest = client.sha256_digest(&range(0, 5000, 64)).unwrap();
    assert_eq!(digest.to_vec(), Sha256::digest(&data).to_vec());
    client.nop().unwrap();
    client.power_reset().unwrap();
}

#[test]
fn power_takes_only_the_values_programmers_know_and_reset_to_edl_returns_to_sahara() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut host) = firehose(dir.path(), EdlConfig::default());
    // The value flashline once invented is refused, as a shipped programmer refuses it,
    // and the programmer keeps running.
    host.send_xml("<?xml version=\"1.0\" ?><data><power value=\"edl\" /></data>");
    let (logs, response) = host.response();
    assert!(!response.ack, "{logs:?}");
    assert!(
        logs.iter().any(|l| l.contains("unsupported power value")),
        "{logs:?}"
    );
    host.ack(&Command::Nop);
    host.ack(&Command::SetBootableStorageDrive { lun: 0 });
    host.nak(&Command::SetBootableStorageDrive { lun: 5 });
    host.ack(&Command::Power {
        action: PowerAction::ResetToEdl,
        delay_seconds: None,
    });
    drop(host);
    // Back in the boot ROM, waiting for a programmer.
    let mut host = Host::open(sim.address());
    host.hello(0);
    assert_eq!(host.upload(&programmer()).status, Status::SUCCESS);
    assert!(sim
        .commands()
        .contains(&"firehose:power reset_to_edl".to_string()));
    sim.stop();
}

/// Programs `data` at the start of boot and asks for `digests` digests of it, through a
/// device made with `cfg`; returns the LUN's bytes there and how long the Firehose part
/// took.
fn timed_program(cfg: EdlConfig, data: &[u8], digests: usize) -> (Vec<u8>, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let (sim, mut host) = firehose(dir.path(), cfg);
    let lun0 = sim.lun_path(0);
    let boot = Gpt::parse(512, &file_bytes(&lun0, 0, 34 * 512))
        .unwrap()
        .find("boot")
        .unwrap()
        .clone();
    let sectors = data.len() as u64 / 512;
    let started = Instant::now();
    host.program(range(0, boot.first_lba, sectors), data);
    for _ in 0..digests {
        assert_eq!(
            host.digest(range(0, boot.first_lba, sectors)),
            hex::encode(Sha256::digest(data))
        );
    }
    let took = started.elapsed();
    let stored = file_bytes(&lun0, boot.first_lba * 512, data.len());
    sim.stop();
    (stored, took)
}

#[test]
fn a_shaped_link_takes_the_host_bytes_at_its_rate_and_charges_each_round_trip() {
    // 1 MiB at 2 MB/s: at least 0.52 s however fast the machine; the same transfer on the
    // bare pseudo-terminal is the comparison, so no wall-clock limit is assumed.
    let data: Vec<u8> = (0..2048 * 512u32).map(|i| (i % 251) as u8).collect();
    let rate = 2_000_000u64;
    let (bare_bytes, bare) = timed_program(EdlConfig::default(), &data, 0);
    let (shaped_bytes, shaped) = timed_program(
        EdlConfig {
            link_rate: Some(rate),
            ..EdlConfig::default()
        },
        &data,
        0,
    );
    assert!(
        bare_bytes == data && shaped_bytes == data,
        "the bytes arrive"
    );
    let floor = Duration::from_secs_f64(data.len() as f64 / rate as f64);
    assert!(
        shaped >= floor.mul_f64(0.95),
        "{} bytes at {rate} B/s took {shaped:?}",
        data.len()
    );
    assert!(shaped > bare, "shaped {shaped:?}, bare {bare:?}");

    // A round trip per turn: a digest is a command (the host speaks after the device's
    // last answer) and its answer, so ten of them cost at least ten latencies.
    let latency = Duration::from_millis(30);
    let small = &data[..8 * 512];
    let (_, quick) = timed_program(EdlConfig::default(), small, 10);
    let (bytes, slow) = timed_program(
        EdlConfig {
            latency,
            ..EdlConfig::default()
        },
        small,
        10,
    );
    assert!(bytes == small);
    assert!(slow >= latency * 10, "10 digests took {slow:?}");
    assert!(slow > quick, "with latency {slow:?}, without {quick:?}");
}
