//! Real Firehose transcripts, as posted in public issue threads (tests/data/firehose/, each
//! file naming its source), read by flashline's Firehose codec and client.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use flashline::protocol::firehose::{Command, DeviceDoc, DocReader, FirehoseClient};
use flashline::transport::{Transport, TransportError};

fn corpus(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/firehose")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.starts_with("# source: https://github.com/")),
        "{name} names its source first"
    );
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The XML after `marker` on a transcript line.
fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    &line[line.find(marker).unwrap() + marker.len()..]
}

#[test]
fn every_corpus_file_names_its_source() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/firehose");
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!corpus(&name).is_empty(), "{name} holds lines");
        files += 1;
    }
    assert!(files >= 5);
}

#[test]
fn edl_configure_as_sent_is_a_valid_command() {
    let lines = corpus("edl-pr-323-configure-tx.txt");
    let Command::Configure(c) = Command::parse(after(&lines[0], "TX:")).unwrap() else {
        panic!("not a configure");
    };
    assert_eq!(c.memory_name, "eMMC");
    assert_eq!(c.max_payload_to_target, 1_048_576);
    // edl spells it ZLPAwareHost; attribute names match without case.
    assert!(c.zlp_aware_host);
    assert!(!c.skip_storage_init);
}

#[test]
fn back_to_back_documents_from_a_hex_dump_are_cut_apart() {
    let bytes: Vec<u8> = corpus("edl-issue-197-back-to-back-hexdump.txt")
        .iter()
        .flat_map(|line| {
            after(line, "printBuffer:6094 ")
                .split(' ')
                .take(16)
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut pipe = Pipe::new(vec![bytes]);
    let mut reader = DocReader::new();
    let first = reader
        .next_document(&mut pipe, Duration::from_millis(10))
        .unwrap();
    let doc = DeviceDoc::parse(&first).unwrap();
    assert_eq!(
        doc.logs,
        ["INFO: Binary build date: Dec 19 2019 @ 20:53:50"]
    );
    assert!(doc.response.is_none());
    // The second document is cut off where the post ends: it is not taken for one.
    assert!(reader
        .next_document(&mut pipe, Duration::from_millis(10))
        .is_err());
    assert!(reader.buffered().starts_with(b"<?xml version=\"1.0\""));
}

#[test]
fn a_configure_answered_by_a_log_alone_is_taken_with_a_small_payload() {
    let lines = corpus("edl-issue-230-configure-log-only.txt");
    let answer = after(&lines[0], "RX:").as_bytes().to_vec();
    assert_eq!(
        DeviceDoc::parse(std::str::from_utf8(&answer).unwrap())
            .unwrap()
            .logs,
        ["Host's payload to target size is too large"]
    );
    let mut client = FirehoseClient::new(Pipe::answering(answer));
    client.set_timeouts(flashline::protocol::firehose::FirehoseTimeouts {
        response: Duration::from_millis(300),
        data: Duration::from_millis(300),
        finish: Duration::from_millis(300),
        configure_boot: Duration::from_secs(1),
    });
    let config = client.configure("emmc", 1 << 20).unwrap();
    assert!(!config.answered);
    assert_eq!(
        config.max_payload_to_target,
        flashline::protocol::firehose::client::LOGS_ONLY_PAYLOAD
    );
}

#[test]
fn a_shipped_programmer_lists_no_digest_but_sets_the_boot_lun() {
    let lines = corpus("qdl-js-issue-94-supported-functions.txt");
    let start = lines
        .iter()
        .position(|l| l.contains("Supported Functions (16)"))
        .unwrap();
    let functions: Vec<&str> = lines[start + 1..start + 17]
        .iter()
        .map(|l| l.trim_start_matches("[Device] "))
        .collect();
    assert!(functions.contains(&"setbootablestoragedrive"));
    assert!(functions.contains(&"getstorageinfo"));
    assert!(!functions.contains(&"getsha256digest"));
    // The tags it knows are the ones flashline's codec sends by those names.
    for tag in [
        "program",
        "read",
        "nop",
        "patch",
        "configure",
        "erase",
        "power",
    ] {
        assert!(functions.contains(&tag), "{tag}");
    }
    let nak = corpus("edl-ng-issue-5-configure-nak.txt");
    assert!(nak[1].ends_with("Host's payload to target size is too large"));
}

/// A device end that hands out fixed reads; `answering` holds its bytes back until the
/// host has written something.
struct Pipe {
    reads: VecDeque<Vec<u8>>,
    held: Option<Vec<u8>>,
}

impl Pipe {
    fn new(reads: Vec<Vec<u8>>) -> Self {
        Pipe {
            reads: reads.into(),
            held: None,
        }
    }

    fn answering(answer: Vec<u8>) -> Self {
        Pipe {
            reads: VecDeque::new(),
            held: Some(answer),
        }
    }
}

impl Transport for Pipe {
    fn write(&mut self, _: &[u8], _: Duration) -> Result<(), TransportError> {
        if let Some(answer) = self.held.take() {
            self.reads.push_back(answer);
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let Some(next) = self.reads.pop_front() else {
            std::thread::sleep(timeout.min(Duration::from_millis(20)));
            return Err(TransportError::Timeout(timeout));
        };
        let n = next.len().min(buf.len());
        buf[..n].copy_from_slice(&next[..n]);
        if n < next.len() {
            self.reads.push_front(next[n..].to_vec());
        }
        Ok(n)
    }

    fn address(&self) -> &str {
        "corpus"
    }
}
