//! Unit tests for the Firehose codec and document reader.

use super::*;

fn range() -> SectorRange {
    SectorRange {
        lun: 4,
        start_sector: 6,
        sector_size: 4096,
        num_sectors: 1024,
    }
}

#[test]
fn commands_round_trip() {
    let commands = [
        Command::Configure(Configure {
            memory_name: "ufs".into(),
            max_payload_to_target: 1 << 20,
            verbose: false,
            zlp_aware_host: true,
            skip_storage_init: false,
        }),
        Command::Program(range()),
        Command::Read(range()),
        Command::Erase(range()),
        Command::EraseAll {
            lun: 1,
            sector_size: 512,
        },
        Command::Patch(Patch {
            lun: 0,
            sector_size: 512,
            start_sector: 1,
            byte_offset: 16,
            size_in_bytes: 4,
            value: 0xdead_beef,
        }),
        Command::GetSha256Digest(range()),
        Command::GetStorageInfo { lun: 2 },
        Command::Power {
            action: PowerAction::Reset,
            delay_seconds: Some(10),
        },
        Command::Power {
            action: PowerAction::Off,
            delay_seconds: None,
        },
        Command::Power {
            action: PowerAction::ResetToEdl,
            delay_seconds: None,
        },
        Command::SetBootableStorageDrive { lun: 1 },
        Command::Nop,
        Command::Unknown { tag: "peek".into() },
    ];
    for command in commands {
        let xml = command.to_xml();
        assert!(xml.starts_with("<?xml version=\"1.0\"?><data><"), "{xml}");
        assert_eq!(Command::parse(&xml).unwrap(), command, "{xml}");
    }
}

#[test]
fn program_golden_document() {
    assert_eq!(
        Command::Program(range()).to_xml(),
        "<?xml version=\"1.0\"?><data><program SECTOR_SIZE_IN_BYTES=\"4096\" \
         num_partition_sectors=\"1024\" physical_partition_number=\"4\" \
         start_sector=\"6\"/></data>"
    );
}

#[test]
fn power_takes_only_the_documented_values() {
    let power = |value: &str| {
        Command::parse(&format!(
            "<?xml version=\"1.0\" ?><data><power value=\"{value}\"/></data>"
        ))
    };
    assert_eq!(
        power("reset_to_edl").unwrap(),
        Command::Power {
            action: PowerAction::ResetToEdl,
            delay_seconds: None
        }
    );
    assert!(power("reset").is_ok() && power("off").is_ok());
    // The value this project once invented; programmers do not know it.
    assert!(matches!(
        power("edl"),
        Err(FirehoseError::BadCommand { .. })
    ));
}

#[test]
fn bad_commands_are_named() {
    let e = Command::parse(
        r#"<?xml version="1.0" ?><data><read SECTOR_SIZE_IN_BYTES="512" num_partition_sectors="1" physical_partition_number="0" start_sector="NUM_DISK_SECTORS-5."/></data>"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("start_sector"), "{e}");
    assert!(matches!(
        Command::parse("<?xml version=\"1.0\" ?><data><nop/><nop/></data>"),
        Err(FirehoseError::Xml(_))
    ));
    assert!(matches!(
        Command::parse("<?xml version=\"1.0\" ?><dat><nop/></dat>"),
        Err(FirehoseError::Xml(_))
    ));
}

#[test]
fn device_documents_round_trip_with_escaping() {
    let doc = DeviceDoc {
        logs: vec!["a \"quoted\" <log> & more".into(), "second".into()],
        response: Some(
            Response::nak()
                .with("MaxPayloadSizeToTargetInBytes", 65536)
                .with("rawmode", "false"),
        ),
    };
    let xml = doc.encode();
    assert!(
        xml.contains("&quot;quoted&quot; &lt;log&gt; &amp;"),
        "{xml}"
    );
    let parsed = DeviceDoc::parse(&xml).unwrap();
    assert_eq!(parsed, doc);
    let response = parsed.response.unwrap();
    assert_eq!(response.get("maxpayloadsizetotargetinbytes"), Some("65536"));
    assert!(!response.rawmode());
    assert!(DeviceDoc::parse(
        "<?xml version=\"1.0\" ?><data><response value=\"ACK\" rawmode=\"true\"/></data>"
    )
    .unwrap()
    .response
    .unwrap()
    .rawmode());
}

/// Delivers fixed reads, then times out.
struct Reads(std::collections::VecDeque<Vec<u8>>);

impl Transport for Reads {
    fn write(&mut self, _: &[u8], _: Duration) -> Result<(), TransportError> {
        Ok(())
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let next = self.0.pop_front().ok_or(TransportError::Timeout(timeout))?;
        buf[..next.len()].copy_from_slice(&next);
        Ok(next.len())
    }
    fn address(&self) -> &str {
        "reads"
    }
}

#[test]
fn reader_splits_and_joins_documents() {
    let a = DeviceDoc::log("a").encode();
    let b = DeviceDoc::response(Response::ack().with("rawmode", "true")).encode();
    let (b1, b2) = b.split_at(10);
    let mut reads = Reads(
        [
            format!("{a}\n{b1}").into_bytes(),
            Vec::new(),
            format!("{b2}RAW").into_bytes(),
        ]
        .into(),
    );
    let mut reader = DocReader::new();
    let wait = Duration::from_millis(10);
    assert_eq!(reader.next_document(&mut reads, wait).unwrap(), a);
    assert_eq!(reader.next_document(&mut reads, wait).unwrap(), b);
    assert_eq!(reader.buffered(), b"RAW");
    let mut raw = [0u8; 8];
    assert_eq!(reader.read_raw(&mut reads, &mut raw, wait).unwrap(), 3);
    assert!(matches!(
        reader.next_document(&mut reads, wait),
        Err(FirehoseError::Transport(TransportError::Timeout(_)))
    ));
}

#[test]
fn bad_device_documents_are_rejected() {
    for doc in [
        "<?xml version=\"1.0\" ?><data><response value=\"MAYBE\"/></data>",
        "<?xml version=\"1.0\" ?><data><response value=\"ACK\"/><response value=\"ACK\"/></data>",
        "<?xml version=\"1.0\" ?><data><log value=\"unterminated/></data>",
        "<?xml version=\"1.0\" ?><data><log value=\"x\"/>",
    ] {
        assert!(DeviceDoc::parse(doc).is_err(), "{doc}");
    }
}
