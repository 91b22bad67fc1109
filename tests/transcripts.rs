//! Real transcripts from public posts (tests/data/sahara, tests/data/at, each with its
//! source) through flashline's parsers: the Sahara codec and chip-identity parsers, and
//! the AT client replaying what real modems answered.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;

use flashline::protocol::at::{AtClient, BatteryReading};
use flashline::protocol::sahara::identity::{parse_serial, trim_pk_hash};
use flashline::protocol::sahara::{Hwid, Packet};
use flashline::transport::{Transport, TransportError};

fn corpus(dir: &str) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.starts_with("# source: "),
                "{} does not start with its source",
                p.display()
            );
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    files.sort();
    files
}

/// The value after `KEY:` on a transcript line, without its `0x`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim_start_matches(':').trim())
        .map(|v| v.split_whitespace().next().unwrap_or(""))
        .map(|v| v.trim_start_matches("0x"))
}

#[test]
fn sahara_summaries_parse_as_posted() {
    let files = corpus("sahara");
    assert!(files.len() >= 5);
    let mut seen = 0;
    for (name, text) in &files {
        if let Some(hwid) = field(text, "HWID") {
            // Our split of the 64-bit id agrees with edl's printed parts.
            let id = Hwid::parse(&format!("0x{hwid}")).unwrap();
            let line = text.lines().find(|l| l.starts_with("HWID")).unwrap();
            assert!(
                line.contains(&format!("MSM_ID:0x{:08x}", id.msm_id())),
                "{name}"
            );
            assert!(
                line.contains(&format!("OEM_ID:0x{:04x}", id.oem_id())),
                "{name}"
            );
            assert!(
                line.contains(&format!("MODEL_ID:0x{:04x}", id.model_id())),
                "{name}"
            );
            seen += 1;
        }
        if let Some(hash) = field(text, "PK_HASH") {
            match hex::decode(hash) {
                Ok(bytes) => {
                    let trimmed = trim_pk_hash(&bytes).unwrap();
                    assert!(
                        matches!(trimmed.len(), 32 | 48),
                        "{name}: {}",
                        trimmed.len()
                    );
                    assert!(
                        trimmed.len() == bytes.len()
                            || bytes[trimmed.len()..].iter().all(|&b| b == 0)
                    );
                }
                // A placeholder posted with an odd number of digits.
                Err(_) => assert_eq!(name, "msm8974-placeholders.txt"),
            }
        }
        if let Some(serial) = field(text, "Serial") {
            let value = u64::from_str_radix(serial, 16).unwrap();
            let raw = match u32::try_from(value) {
                Ok(v) => v.to_le_bytes().to_vec(),
                Err(_) => value.to_le_bytes().to_vec(),
            };
            let parsed = parse_serial(&raw);
            if value == 0xffff_ffff {
                assert_eq!(parsed, None, "{name}: a placeholder names no chip");
            } else {
                assert_eq!(parsed, Some(value), "{name}");
            }
        }
    }
    assert!(seen >= 4);
    // Sahara 3: a serial past 32 bits and nothing else.
    let (_, v3) = files
        .iter()
        .find(|(n, _)| n.starts_with("sdx7x-v3"))
        .unwrap();
    assert!(field(v3, "HWID").is_none() && field(v3, "PK_HASH").is_none());
    assert!(u64::from_str_radix(field(v3, "Serial").unwrap(), 16).unwrap() > u64::from(u32::MAX));
}

#[test]
fn sahara_packets_decode_as_posted() {
    let (_, text) = corpus("sahara")
        .into_iter()
        .find(|(n, _)| n == "command-mode-packets.txt")
        .unwrap();
    let packets: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("TX:").or_else(|| l.strip_prefix("RX:")))
        .map(|h| hex::decode(h).unwrap())
        .collect();
    let decoded: Vec<Option<Packet>> = packets.iter().map(|p| Packet::parse(p).ok()).collect();
    assert!(matches!(
        decoded[0],
        Some(Packet::HelloResp { mode: 3, .. })
    ));
    assert_eq!(decoded[1], Some(Packet::CmdReady));
    assert_eq!(
        decoded[2],
        Some(Packet::ExecuteResp {
            client_cmd: 2,
            data_len: 0x18
        })
    );
    assert_eq!(decoded[3], Some(Packet::ExecuteData { client_cmd: 2 }));
    // The raw serial answer is no packet; as a serial it is 0x1e76093a.
    assert_eq!(decoded[4], None);
    assert_eq!(parse_serial(&packets[4]), Some(0x1e76_093a));
    assert_eq!(decoded[5], Some(Packet::Execute { client_cmd: 2 }));
}

/// A modem that answers each command with what a transcript shows.
struct Replay {
    answers: VecDeque<(String, Vec<u8>)>,
    out: VecDeque<u8>,
}

impl Transport for Replay {
    fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
        let command = String::from_utf8_lossy(data).trim().to_string();
        let answer = match self.answers.front() {
            Some((c, _)) if c.eq_ignore_ascii_case(&command) => self.answers.pop_front().unwrap().1,
            _ => b"\r\nERROR\r\n".to_vec(),
        };
        self.out.extend(answer);
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if self.out.is_empty() {
            return Err(TransportError::Timeout(timeout));
        }
        let n = buf.len().min(self.out.len());
        for (slot, byte) in buf.iter_mut().zip(self.out.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }

    fn address(&self) -> &str {
        "replay"
    }
}

/// The transcript's commands and answers. A post that shows no final result after an
/// answer gets `OK` added, since the poster cut it off.
fn sessions(text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        match line.strip_prefix(">>") {
            Some(command) => out.push((command.trim().to_string(), Vec::new())),
            None => out.last_mut().unwrap().1.push(line.to_string()),
        }
    }
    out.into_iter()
        .map(|(command, lines)| {
            let mut bytes = Vec::new();
            for line in &lines {
                bytes.extend_from_slice(format!("\r\n{line}\r\n").as_bytes());
            }
            if !lines.iter().any(|l| matches!(l.trim(), "OK" | "ERROR")) {
                bytes.extend_from_slice(b"\r\nOK\r\n");
            }
            (command, bytes)
        })
        .collect()
}

fn client(answers: Vec<(String, Vec<u8>)>) -> AtClient<Replay> {
    let mut client = AtClient::new(Replay {
        answers: answers.into(),
        out: VecDeque::new(),
    });
    client.set_timeout(Duration::from_millis(200));
    client
}

#[test]
fn zte_ati_answers_identify_the_modem() {
    for (file, model, revision, manufacturer) in [
        (
            "zte-mf823-factory.txt",
            "MF823",
            "MF823_T03",
            "ZTE CORPORATION",
        ),
        (
            "zte-mf100-zcdrun-e.txt",
            "MF100",
            "BD_BLNP671A1V1.0.0B02",
            "ZTE INCORPORATED",
        ),
    ] {
        let (_, text) = corpus("at").into_iter().find(|(n, _)| n == file).unwrap();
        let mut answers = sessions(&text);
        // flashline asks ATI; the MF100's poster typed ati0, which is the same command.
        answers[0].0 = "ATI".into();
        // ATE0 first: the transcripts do not show it; a modem answers OK.
        answers.insert(0, ("ATE0".into(), b"\r\nOK\r\n".to_vec()));
        let id = client(answers).identify().unwrap();
        assert_eq!(id.model.as_deref(), Some(model), "{file}");
        assert_eq!(id.revision.as_deref(), Some(revision), "{file}");
        assert_eq!(id.manufacturer.as_deref(), Some(manufacturer), "{file}");
        assert!(id.imei.is_some(), "{file}");
    }
}

#[test]
fn the_factory_mode_answer_is_a_successful_switch() {
    let (_, text) = corpus("at")
        .into_iter()
        .find(|(n, _)| n == "zte-mf100-zcdrun-e.txt")
        .unwrap();
    let mut answers: Vec<_> = sessions(&text)
        .into_iter()
        .filter(|(c, _)| c == "AT+ZCDRUN=E")
        .collect();
    assert_eq!(answers.len(), 1);
    answers.insert(0, ("ATE0".into(), b"\r\nOK\r\n".to_vec()));
    client(answers).send_switch("AT+ZCDRUN=E").unwrap();
}

#[test]
fn battery_answers_follow_27_007() {
    let (_, text) = corpus("at")
        .into_iter()
        .find(|(n, _)| n == "cbc.txt")
        .unwrap();
    let readings: Vec<Result<BatteryReading, String>> = text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("+CBC:"))
        .map(BatteryReading::parse)
        .collect();
    assert_eq!(
        readings[0],
        Ok(BatteryReading::NoBattery),
        "bcs 2: no battery"
    );
    assert_eq!(
        readings[1],
        Ok(BatteryReading::Percent {
            percent: 97,
            charging: false
        })
    );
    assert_eq!(
        readings[2],
        Ok(BatteryReading::Percent {
            percent: 0,
            charging: false
        })
    );
    assert!(
        readings[3].is_err(),
        "a bare voltage is not a charge: {:?}",
        readings[3]
    );
    assert_eq!(readings.len(), 4);
}
