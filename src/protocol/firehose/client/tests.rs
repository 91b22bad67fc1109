//! Unit tests for the Firehose client, driven by a scripted transport shared by all.

use super::query::{find_digest, json_value, parse_storage_info};
use super::*;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One step of a scripted exchange.
#[derive(Debug)]
enum Step {
    /// The host must send this command.
    Host(Command),
    /// The host must write this many data-phase bytes, in any number of writes.
    HostData(usize),
    /// The device sends these bytes (they become readable once the steps before are done).
    Device(Vec<u8>),
    /// The link drops: reads and writes fail from here on.
    Disconnect,
    /// Nothing more arrives for this long (counted from when the steps before are done).
    Pause(Duration),
}
use Step::{Device, Disconnect, Host, HostData, Pause};

/// An in-memory device that follows a script, delivering its bytes in reads of at most
/// `split` bytes, and fails the test on any deviation.
struct Scripted {
    steps: VecDeque<Step>,
    readable: VecDeque<u8>,
    split: usize,
    data: Vec<u8>,
    writes: Vec<usize>,
    /// The end of the [`Pause`] at the front of the script.
    paused_until: Option<Instant>,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Self {
        Scripted {
            steps: steps.into(),
            readable: VecDeque::new(),
            split: usize::MAX,
            data: Vec::new(),
            writes: Vec::new(),
            paused_until: None,
        }
    }

    fn release(&mut self) {
        loop {
            match self.steps.front() {
                Some(Device(_)) => {
                    if let Some(Device(bytes)) = self.steps.pop_front() {
                        self.readable.extend(bytes);
                    }
                }
                Some(Pause(pause)) => {
                    let until = *self.paused_until.get_or_insert(Instant::now() + *pause);
                    if Instant::now() < until {
                        return;
                    }
                    self.paused_until = None;
                    self.steps.pop_front();
                }
                _ => return,
            }
        }
    }

    fn finished(&self) -> bool {
        self.steps.is_empty() && self.readable.is_empty()
    }
}

impl Transport for Scripted {
    fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
        self.release();
        match self.steps.front_mut() {
            Some(Host(expected)) => {
                let sent = Command::parse(std::str::from_utf8(data).unwrap()).unwrap();
                assert_eq!(&sent, expected);
                self.steps.pop_front();
            }
            Some(HostData(left)) => {
                assert!(data.len() <= *left, "host wrote past the data phase");
                *left -= data.len();
                self.data.extend_from_slice(data);
                self.writes.push(data.len());
                if *left == 0 {
                    self.steps.pop_front();
                }
            }
            Some(Disconnect) => return Err(TransportError::Disconnected),
            other => panic!(
                "host wrote {} bytes while the script has {other:?}",
                data.len()
            ),
        }
        self.release();
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.release();
        if let (true, Some(until)) = (self.readable.is_empty(), self.paused_until) {
            std::thread::sleep(timeout.min(until.saturating_duration_since(Instant::now())));
            self.release();
        }
        if self.readable.is_empty() {
            return Err(match self.steps.front() {
                Some(Disconnect) => TransportError::Disconnected,
                _ => TransportError::Timeout(timeout),
            });
        }
        let n = self.readable.len().min(buf.len()).min(self.split);
        for (slot, byte) in buf.iter_mut().zip(self.readable.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    fn address(&self) -> &str {
        "scripted"
    }
}

fn doc(doc: DeviceDoc) -> Step {
    Device(doc.encode().into_bytes())
}

fn log(text: &str) -> Step {
    doc(DeviceDoc::log(text))
}

fn ack() -> Step {
    doc(DeviceDoc::response(Response::ack()))
}

fn nak() -> Step {
    doc(DeviceDoc::response(Response::nak()))
}

fn configure(payload: u32) -> Step {
    Host(Command::Configure(Configure {
        memory_name: "ufs".into(),
        max_payload_to_target: payload,
        verbose: false,
        zlp_aware_host: true,
        skip_storage_init: false,
    }))
}

fn configured(steps: Vec<Step>) -> FirehoseClient<Scripted> {
    let mut script = vec![
        configure(4096),
        doc(DeviceDoc::response(
            Response::ack().with("MaxPayloadSizeToTargetInBytesSupported", 4096),
        )),
    ];
    script.extend(steps);
    let mut client = FirehoseClient::new(Scripted::new(script));
    client.configure("ufs", 4096).unwrap();
    client
}

fn range(num_sectors: u64) -> SectorRange {
    SectorRange {
        lun: 0,
        start_sector: 34,
        sector_size: 512,
        num_sectors,
    }
}

#[test]
fn configure_takes_the_supported_size_from_an_ack() {
    let mut client = FirehoseClient::new(Scripted::new(vec![
        log("firehose booted"),
        configure(1 << 20),
        doc(DeviceDoc {
            logs: vec!["Calling storage init".into()],
            response: Some(
                Response::ack()
                    .with("MaxPayloadSizeToTargetInBytes", 1 << 20)
                    .with("MaxPayloadSizeToTargetInBytesSupported", 65536),
            ),
        }),
        configure(65536),
        doc(DeviceDoc::response(
            Response::ack()
                .with("MaxPayloadSizeToTargetInBytesSupported", 65536)
                .with("MaxPayloadSizeFromTargetInBytes", 8192)
                .with("MaxXMLSizeInBytes", 4096)
                .with("MemoryName", "UFS")
                .with("TargetName", "8250")
                .with("Version", "1"),
        )),
    ]));
    let config = client.configure("ufs", 1 << 20).unwrap();
    assert_eq!(
        config,
        DeviceConfig {
            max_payload_to_target: 65536,
            max_payload_from_target: Some(8192),
            max_xml_size: Some(4096),
            memory_name: Some("UFS".into()),
            target_name: Some("8250".into()),
            version: Some("1".into()),
            answered: true,
        }
    );
    assert!(client.transport().finished());
}

#[test]
fn configure_follows_a_nak_with_the_demanded_size() {
    let mut client = FirehoseClient::new(Scripted::new(vec![
        configure(1 << 20),
        doc(DeviceDoc::response(
            Response::nak().with("MaxPayloadSizeToTargetInBytes", 16384),
        )),
        configure(16384),
        ack(),
    ]));
    assert_eq!(
        client
            .configure("ufs", 1 << 20)
            .unwrap()
            .max_payload_to_target,
        16384
    );
    // A NAK without a size to retry with is a refusal with the logged reason.
    let mut client = FirehoseClient::new(Scripted::new(vec![
        configure(4096),
        log("Not support configure MemoryName eMMC"),
        nak(),
    ]));
    let e = client.configure("ufs", 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        "<configure> refused by the device (NAK): Not support configure MemoryName eMMC"
    );
}

#[test]
fn program_streams_exactly_the_range_in_payload_sized_writes() {
    let payload: Vec<u8> = (0..9 * 512).map(|i| (i % 253) as u8).collect();
    for split in [1, 13, usize::MAX] {
        let mut client = configured(vec![
            Host(Command::Program(range(9))),
            doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
            HostData(9 * 512),
            log("Finished programming"),
            ack(),
            log("late log after the ACK"),
            Host(Command::Nop),
            nak(),
        ]);
        client.transport.split = split;
        let mut last = 0;
        client
            .program(&range(9), &mut &payload[..], &mut |n| last = n)
            .unwrap();
        // The late log was drained with <program>; it is not the reason for this NAK.
        assert_eq!(
            client.nop().unwrap_err().to_string(),
            "<nop> refused by the device (NAK): the device gave no reason"
        );
        let device = client.into_transport();
        assert!(device.finished());
        assert_eq!(device.data, payload);
        assert_eq!(device.writes, [4096, 512]);
        assert_eq!(last, 9 * 512);
    }
}

#[test]
fn program_pads_short_data_and_nak_reasons_are_logged() {
    let mut client = configured(vec![
        Host(Command::Program(range(2))),
        doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
        HostData(1024),
        ack(),
        Host(Command::Nop),
        ack(),
    ]);
    let e = client
        .program(&range(2), &mut &[7u8; 1000][..], &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            e,
            FirehoseError::SourceStopped {
                expected: 1024,
                supplied: 1000,
                ..
            }
        ),
        "{e}"
    );
    // The range was finished with zeros, so the session goes on.
    client.nop().unwrap();
    let device = client.into_transport();
    assert_eq!(&device.data[..1000], &[7u8; 1000][..]);
    assert!(device.data[1000..].iter().all(|&b| b == 0));

    let mut client = configured(vec![
        Host(Command::Program(range(2))),
        doc(DeviceDoc {
            logs: vec!["ERROR: start_sector beyond the LUN".into()],
            response: Some(Response::nak()),
        }),
        Host(Command::Nop),
        ack(),
    ]);
    let e = client
        .program(&range(2), &mut &[0u8; 1024][..], &mut |_| {})
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "<program> refused by the device (NAK): ERROR: start_sector beyond the LUN"
    );
    // A NAK leaves the session usable.
    client.nop().unwrap();
}

#[test]
fn read_takes_raw_data_from_the_same_read_as_the_ack() {
    let disk: Vec<u8> = (0..4 * 512).map(|i| (i * 3 % 256) as u8).collect();
    for split in [1, 100, usize::MAX] {
        let mut burst = DeviceDoc::response(Response::ack().with("rawmode", "true"))
            .encode()
            .into_bytes();
        burst.extend_from_slice(&disk);
        burst.extend(DeviceDoc::response(Response::ack()).encode().into_bytes());
        let mut client = configured(vec![Host(Command::Read(range(4))), Device(burst)]);
        client.transport.split = split;
        let mut out = Vec::new();
        client.read(&range(4), &mut out, &mut |_| {}).unwrap();
        assert_eq!(out, disk);
        assert!(client.transport().finished());
    }
}

#[test]
fn an_answer_logged_after_the_ack_is_waited_for() {
    // Late logs get only a moment after most answers; a digest or the storage geometry
    // that comes after the ACK is still waited for.
    let mut client = configured(vec![
        Host(Command::GetSha256Digest(range(8))),
        ack(),
        Pause(Duration::from_millis(30)),
        log(&format!("Digest {}", "ef".repeat(32))),
        Host(Command::GetStorageInfo { lun: 0 }),
        ack(),
        Pause(Duration::from_millis(30)),
        log(r#"INFO: {"storage_info": {"total_blocks":64, "block_size":512}}"#),
    ]);
    assert_eq!(client.sha256_digest(&range(8)).unwrap(), [0xef; 32]);
    assert_eq!(client.storage_info(0).unwrap().total_blocks, 64);
    assert!(client.into_transport().finished());
}

#[test]
fn digest_and_storage_info_come_from_logs_or_attributes() {
    let digest = "ab".repeat(32);
    let mut client = configured(vec![
        Host(Command::GetSha256Digest(range(8))),
        log(&format!("Digest {digest}")),
        ack(),
        Host(Command::GetSha256Digest(range(8))),
        doc(DeviceDoc::response(
            Response::ack().with("Digest", "cd".repeat(32)),
        )),
        Host(Command::GetStorageInfo { lun: 1 }),
        log(
            r#"INFO: {"storage_info": {"total_blocks":1000, "block_size":4096, "page_size":4096, "num_physical":6, "manufacturer_id":462, "serial_num":1234, "fw_version":"0300","mem_type":"UFS","prod_name":"KM8V8001JM-B813"}}"#,
        ),
        ack(),
    ]);
    assert_eq!(client.sha256_digest(&range(8)).unwrap(), [0xab; 32]);
    assert_eq!(client.sha256_digest(&range(8)).unwrap(), [0xcd; 32]);
    assert_eq!(
        client.storage_info(1).unwrap(),
        StorageInfo {
            total_blocks: 1000,
            block_size: 4096,
            page_size: Some(4096),
            num_physical: Some(6),
            mem_type: Some("UFS".into()),
            prod_name: Some("KM8V8001JM-B813".into()),
            fw_version: Some("0300".into()),
        }
    );
}

#[test]
fn logs_reach_the_callback_and_floods_are_capped() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut client = configured(vec![Host(Command::Nop), log("one"), ack(), log("two")]);
    let sink = seen.clone();
    client.on_log(Box::new(move |line| {
        sink.lock().unwrap().push(line.to_string())
    }));
    client.nop().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["one", "two"]);

    let flood = DeviceDoc {
        logs: vec!["x".into(); 1000],
        response: None,
    };
    let mut steps = vec![Host(Command::Nop)];
    steps.extend((0..11).map(|_| doc(flood.clone())));
    let mut client = configured(steps);
    let e = client.nop().unwrap_err();
    assert_eq!(
        e.to_string(),
        "<nop>: the device sent more than 10000 log lines without finishing"
    );
}

#[test]
fn an_unterminated_document_is_capped() {
    let mut endless = b"<?xml version=\"1.0\" ?><data><log value=\"".to_vec();
    endless.resize(super::super::MAX_DOCUMENT_LEN + 10, b'a');
    let mut client = configured(vec![Host(Command::Nop), Device(endless)]);
    assert!(matches!(
        client.nop(),
        Err(FirehoseError::DocumentTooLarge { .. })
    ));
}

#[test]
fn a_disconnect_mid_transfer_is_reported() {
    let mut client = configured(vec![
        Host(Command::Program(range(16))),
        doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
        HostData(4096),
        Disconnect,
    ]);
    let e = client
        .program(&range(16), &mut &[0u8; 16 * 512][..], &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(e, FirehoseError::Transport(TransportError::Disconnected)),
        "{e}"
    );

    let mut client = configured(vec![
        Host(Command::Read(range(16))),
        doc(DeviceDoc::response(Response::ack().with("rawmode", "true"))),
        Device(vec![0; 1000]),
        Disconnect,
    ]);
    let e = client
        .read(&range(16), &mut Vec::new(), &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(e, FirehoseError::Transport(TransportError::Disconnected)),
        "{e}"
    );
}

#[test]
fn a_second_response_is_out_of_step_and_power_reset_tolerates_the_drop() {
    let mut client = configured(vec![Host(Command::Nop), ack(), ack()]);
    assert!(matches!(client.nop(), Err(FirehoseError::Protocol { .. })));

    let mut client = configured(vec![
        Host(Command::Power {
            action: PowerAction::Reset,
            delay_seconds: None,
        }),
        ack(),
        Disconnect,
    ]);
    client.power_reset().unwrap();
}

#[test]
fn data_commands_need_configure_and_a_sane_range() {
    let mut client = FirehoseClient::new(Scripted::new(vec![]));
    assert!(matches!(
        client.read(&range(1), &mut Vec::new(), &mut |_| {}),
        Err(FirehoseError::NotConfigured(_))
    ));
    let mut client = configured(vec![]);
    let huge = SectorRange {
        num_sectors: u64::MAX,
        ..range(1)
    };
    assert!(matches!(
        client.program(&huge, &mut &[][..], &mut |_| {}),
        Err(FirehoseError::InvalidRequest { .. })
    ));
}

#[test]
fn json_scanner_is_lenient() {
    assert_eq!(json_value(r#"{"a" : "x y", "b":12}"#, "a"), Some("x y"));
    assert_eq!(json_value(r#"{"a" : "x y", "b":12}"#, "b"), Some("12"));
    assert_eq!(json_value(r#"{"a" 1}"#, "a"), None);
    assert!(parse_storage_info(r#"{"total_blocks": 5, "block_size": 0}"#).is_none());
    assert_eq!(
        find_digest(&format!("Digest 0x{}", "0f".repeat(32))),
        Some([0x0f; 32])
    );
    assert_eq!(find_digest("Digest abc"), None);
}
