//! The AT client over a real pseudo-terminal against the virtual dongle and hotspot.
#![cfg(unix)]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flashline::device::bench;
use flashline::protocol::at::{AtClient, AtError, BatteryReading};
use flashline::protocol::diag;
use flashline::sim::{ModemConfig, ModemSim, RunningModem};
use flashline::transport::serial::{list_ports, SerialTransport};
use flashline::transport::{Transport, TransportError};

fn start(cfg: ModemConfig) -> RunningModem {
    ModemSim::start(cfg, None, Box::new(|| {})).unwrap()
}

fn connect(modem: &RunningModem) -> AtClient<SerialTransport> {
    AtClient::new(SerialTransport::open(modem.address()).unwrap())
}

#[test]
fn a_dongle_identifies_itself_and_has_no_battery() {
    let bench_dir = tempfile::tempdir().unwrap();
    let modem = ModemSim::start(
        ModemConfig::dongle(),
        Some(bench_dir.path()),
        Box::new(|| {}),
    )
    .unwrap();
    assert_eq!(modem.address(), format!("serial:{}", modem.tty_path()));
    assert_eq!(
        bench::list(bench_dir.path()),
        vec![bench::BenchEntry {
            address: modem.address().to_string(),
            vid: 0x19d2,
            pid: 0x1403,
            serial: "FLMODEM0001".into(),
            product: "MF833V".into(),
            ..bench::BenchEntry::default()
        }]
    );

    let mut client = connect(&modem);
    let id = client.identify().unwrap();
    assert_eq!(id.manufacturer.as_deref(), Some("ZTE CORPORATION"));
    assert_eq!(id.model.as_deref(), Some("MF833V"));
    assert_eq!(id.revision.as_deref(), Some("BD_MF833VV1.0.0B08"));
    assert_eq!(id.imei.as_deref(), Some("868611040000015"));
    assert_eq!(
        id.ati,
        [
            "Manufacturer: ZTE CORPORATION",
            "Model: MF833V",
            "Revision: BD_MF833VV1.0.0B08",
            "IMEI: 868611040000015",
        ]
    );
    assert_eq!(client.battery().unwrap(), BatteryReading::NoBattery);
    // The modem echoed until ATE0, which the client sent first.
    assert_eq!(
        modem.commands(),
        ["ATE0", "ATI", "AT+CGMI", "AT+CGMM", "AT+CGMR", "AT+CGSN", "AT+CBC"]
    );
}

#[test]
fn a_hotspot_reports_its_charge_through_unsolicited_codes() {
    let modem = start(ModemConfig {
        unsolicited: true,
        ..ModemConfig::hotspot()
    });
    let mut client = connect(&modem);
    let urcs = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&urcs);
    client.on_urc(move |line| seen.lock().unwrap().push(line.to_string()));
    let id = client.identify().unwrap();
    assert_eq!(id.model.as_deref(), Some("MU300"));
    assert_eq!(id.manufacturer.as_deref(), Some("ZTE CORPORATION"));
    assert_eq!(id.imei.as_deref(), Some("868611040000015"));
    assert_eq!(id.ati.len(), 4, "+CREG is not part of ATI: {:?}", id.ati);
    assert_eq!(
        client.battery().unwrap(),
        BatteryReading::Percent {
            percent: 80,
            charging: false
        }
    );
    assert_eq!(
        client.command("AT+CGSN=1").unwrap(),
        ["+CGSN: \"868611040000015\""]
    );
    assert!(urcs.lock().unwrap().iter().all(|l| l == "+CREG: 1"));
    assert_eq!(urcs.lock().unwrap().len(), 7);
}

#[test]
fn refusals_are_errors_plain_or_verbose() {
    let modem = start(ModemConfig::dongle());
    let mut client = connect(&modem);
    assert!(matches!(
        client.command("AT+FLASHLINE"),
        Err(AtError::Error { command }) if command == "AT+FLASHLINE"
    ));
    client.command("AT+CMEE=2").unwrap();
    assert!(matches!(
        client.command("AT+FLASHLINE"),
        Err(AtError::CmeError { code_or_text, .. }) if code_or_text == "unknown"
    ));
}

/// Reads DIAG frames from `port` until one decodes, within `timeout`.
fn diag_answer(port: &mut SerialTransport, timeout: Duration) -> Vec<u8> {
    let mut reader = diag::FrameReader::new();
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = port.read(&mut buf, left).expect("a DIAG answer");
        if let Some(frame) = reader.push(&buf[..n]).into_iter().next() {
            return frame.unwrap();
        }
    }
}

#[test]
fn factory_mode_brings_a_diag_port_whose_dload_request_ends_in_edl() {
    let bench_dir = tempfile::tempdir().unwrap();
    let (ran, switched) = mpsc::channel();
    let modem = ModemSim::start(
        ModemConfig {
            port_path: Some("usb:sim-1".into()),
            ..ModemConfig::dongle()
        },
        Some(bench_dir.path()),
        Box::new(move || ran.send(()).unwrap()),
    )
    .unwrap();
    let mut client = connect(&modem);
    client.command("AT").unwrap();
    assert_eq!(bench::list(bench_dir.path()).len(), 1);

    client.send_switch("AT+ZCDRUN=E").unwrap();
    // The AT port goes; a DIAG port of the factory composition comes, on the same port.
    let deadline = Instant::now() + Duration::from_secs(5);
    let diag_port = loop {
        let entries = bench::list(bench_dir.path());
        if let [entry] = entries.as_slice() {
            if entry.address != modem.address() {
                break entry.clone();
            }
        }
        assert!(Instant::now() < deadline, "no DIAG port appeared");
        thread::sleep(Duration::from_millis(20));
    };
    assert!(modem.switched());
    assert_eq!((diag_port.vid, diag_port.pid), (0x19d2, 0x0016));
    assert_eq!(diag_port.interface, Some(0));
    assert_eq!(diag_port.port_path.as_deref(), Some("usb:sim-1"));
    assert!(
        switched.try_recv().is_err(),
        "not in EDL before the DIAG request"
    );

    let mut port = SerialTransport::open(&diag_port.address).unwrap();
    // An unknown request is answered with 0x13 and the request.
    port.write(&diag::encode(&[0x00]), Duration::from_secs(1))
        .unwrap();
    assert_eq!(diag_answer(&mut port, Duration::from_secs(2)), [0x13, 0x00]);
    // DIAG_DLOAD_F, exactly as reported on the wire, is echoed and ends in EDL.
    port.write(&[0x3A, 0xA1, 0x6E, 0x7E], Duration::from_secs(1))
        .unwrap();
    assert_eq!(diag_answer(&mut port, Duration::from_secs(2)), [0x3A]);
    switched.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(bench::list(bench_dir.path()).is_empty());
    assert_eq!(modem.diag_requests(), ["00", "3a"]);
    assert_eq!(modem.commands().last().unwrap(), "AT+ZCDRUN=E");
    modem.stop();
}

#[test]
fn a_modem_that_goes_straight_to_edl_vanishes_on_the_factory_command() {
    let bench_dir = tempfile::tempdir().unwrap();
    let (ran, switched) = mpsc::channel();
    let modem = ModemSim::start(
        ModemConfig::hotspot(),
        Some(bench_dir.path()),
        Box::new(move || ran.send(()).unwrap()),
    )
    .unwrap();
    let mut client = connect(&modem);
    // The invented command of earlier versions is refused, as real modems refuse it.
    assert!(matches!(
        client.command("AT+ZDLMODE=1"),
        Err(AtError::Error { .. })
    ));
    client.send_switch("AT+ZCDRUN=E").unwrap();
    switched.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(modem.switched());
    assert!(bench::list(bench_dir.path()).is_empty());
    assert_eq!(std::fs::read_dir(bench_dir.path()).unwrap().count(), 0);
    assert!(!Path::new(modem.tty_path()).exists());
    let mut port = client.into_transport();
    assert!(matches!(
        port.read(&mut [0u8; 64], Duration::from_secs(1)),
        Err(TransportError::Disconnected)
    ));
    assert!(modem.diag_requests().is_empty());
    modem.stop();
}

#[test]
fn the_host_can_close_and_reopen_the_port() {
    let modem = start(ModemConfig::hotspot());
    for _ in 0..2 {
        let mut client = connect(&modem);
        assert_eq!(client.identify().unwrap().model.as_deref(), Some("MU300"));
        // Closing with an unread answer pending must not confuse the next session.
        client
            .into_transport()
            .write(b"ATI\r", Duration::from_secs(1))
            .unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    let commands = modem.commands();
    assert_eq!(commands.iter().filter(|c| *c == "ATE0").count(), 2);
}

#[test]
fn the_pty_is_raw_so_the_host_sees_the_modems_exact_bytes() {
    let modem = start(ModemConfig::dongle());
    // A plain file open leaves the terminal settings as the simulator made them.
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(modem.tty_path())
        .unwrap();
    tty.write_all(b"AT\r").unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !got.ends_with(b"OK\r\n") {
            match tty.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        let _ = tx.send(got);
    });
    let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    // The echo ends in CR alone; no CR→LF mapping, no echo of the modem's own output.
    assert_eq!(got, b"AT\r\r\nOK\r\n");
    assert_eq!(modem.commands(), ["AT"]);
}

#[test]
fn overlong_command_lines_are_refused_and_the_modem_recovers() {
    let modem = start(ModemConfig::dongle());
    let mut port = SerialTransport::open(modem.tty_path()).unwrap();
    let mut hostile = b"AT+".to_vec();
    hostile.extend(std::iter::repeat_n(b'A', 4000));
    hostile.push(b'\r');
    port.write(&hostile, Duration::from_secs(2)).unwrap();
    let mut client = AtClient::new(port);
    client.command("AT").unwrap();
    assert_eq!(modem.commands()[0], "<512+ byte line>");
    assert_eq!(client.identify().unwrap().model.as_deref(), Some("MF833V"));
}

#[test]
fn a_silent_port_times_out_without_hanging() {
    let (_master, slave) = serialport::TTYPort::pair().unwrap();
    let path = serialport::SerialPort::name(&slave).unwrap();
    let mut client = AtClient::new(SerialTransport::open(&path).unwrap());
    client.set_timeout(Duration::from_millis(100));
    let started = Instant::now();
    assert!(matches!(client.identify(), Err(AtError::Timeout { .. })));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn listing_serial_ports_works_and_never_shows_ptys() {
    let modem = start(ModemConfig::dongle());
    assert!(list_ports().iter().all(|p| p.path != modem.tty_path()));
}
