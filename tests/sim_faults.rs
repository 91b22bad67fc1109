//! Injected faults in the virtual devices, driven by flashline's own protocol clients: each
//! test checks the error the client sees, the bytes in storage afterwards, that the fault
//! is reported as fired, and that a second attempt succeeds.

use std::fs::OpenOptions;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use flashline::protocol::fastboot::client::{Client, FastbootError};
use flashline::sim::fault::{Fault, FaultPlan};
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};
use flashline::transport::tcp::TcpTransport;
use flashline::transport::TransportError;

const T: Duration = Duration::from_secs(3);
const KIB: usize = 1024;

/// Deterministic test data, different for each seed.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed.wrapping_mul(97).wrapping_add(1))
        .collect()
}

fn plan(faults: &[&str]) -> FaultPlan {
    faults.iter().map(|f| f.parse::<Fault>().unwrap()).collect()
}

/// Overwrites `bytes` at `offset` of the file at `path`.
fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

fn peek(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    bytes[offset as usize..offset as usize + len].to_vec()
}

// ---------------------------------------------------------------------------------------
// The phone, driven by the fastboot client over TCP.

/// A phone with a 1 MiB `boot` and a 512 KiB `system`, whose partitions already hold
/// `old` data (so a cut write shows where it stopped), and `faults`.
fn phone(dir: &Path, faults: &[&str]) -> RunningPhone {
    let cfg = PhoneConfig {
        partitions: vec![("boot".into(), 1 << 20), ("system".into(), 512 << 10)],
        faults: plan(faults),
        ..PhoneConfig::default()
    };
    // Lay the partitions out first, then give them their "old" contents.
    drop(PhoneSim::bind("127.0.0.1:0".parse().unwrap(), dir, cfg.clone()).unwrap());
    poke(&dir.join("boot.img"), 0, &data(1 << 20, 1));
    poke(&dir.join("system.img"), 0, &data(512 << 10, 2));
    PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir, cfg).unwrap()
}

fn connect(phone: &RunningPhone) -> Client<TcpTransport> {
    let mut client = Client::new(TcpTransport::connect(&phone.device_address(), T).unwrap());
    client.set_timeout(T);
    client
}

/// Connects once the phone is back (it may be booting after a fault).
fn reconnect(phone: &RunningPhone) -> Client<TcpTransport> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = TcpTransport::connect(&phone.device_address(), T).map(Client::new);
        if let Ok(mut client) = attempt {
            client.set_timeout(T);
            if client.getvar("product").is_ok() {
                return client;
            }
        }
        assert!(Instant::now() < deadline, "the phone did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn download(client: &mut Client<TcpTransport>, image: &[u8]) -> Result<(), FastbootError> {
    client.download(image.len() as u32, |w| {
        io::copy(&mut &image[..], w).map(drop)
    })
}

fn flash(client: &mut Client<TcpTransport>, part: &str, image: &[u8]) {
    download(client, image).unwrap();
    client.flash(part).unwrap();
}

fn is_disconnect(e: &FastbootError) -> bool {
    matches!(
        e,
        FastbootError::Transport(TransportError::Disconnected | TransportError::Io(_))
    )
}

#[test]
fn phone_disconnect_mid_download_loses_the_download_only() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["disconnect@bytes=300001"]);
    let image = data(1 << 20, 3);

    let mut client = connect(&phone);
    let err = download(&mut client, &image).unwrap_err();
    assert!(is_disconnect(&err), "{err:?}");
    assert_eq!(phone.faults_fired(), ["disconnect@bytes=300001"]);
    drop(client);
    assert!(
        std::fs::read(dir.path().join("boot.img")).unwrap() == data(1 << 20, 1),
        "boot kept its old bytes"
    );

    // The download did not survive the pulled cable; a new one flashes.
    let mut client = reconnect(&phone);
    let err = client.flash("boot").unwrap_err();
    assert!(err.to_string().contains("no image downloaded"), "{err}");
    flash(&mut client, "boot", &image);
    assert!(std::fs::read(dir.path().join("boot.img")).unwrap() == image);
    assert_eq!(phone.faults_fired().len(), 1, "a fault fires once");
}

#[test]
fn phone_power_loss_leaves_exactly_the_bytes_written() {
    const CUT: usize = 123_457;
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &[&format!("power-loss@bytes={CUT}")]);
    let old = data(1 << 20, 1);
    let image = data(1 << 20, 4);

    let mut client = connect(&phone);
    download(&mut client, &image).unwrap();
    let err = client.flash("boot").unwrap_err();
    assert!(is_disconnect(&err), "{err:?}");
    drop(client);
    assert_eq!(phone.faults_fired(), [format!("power-loss@bytes={CUT}")]);
    let boot = std::fs::read(dir.path().join("boot.img")).unwrap();
    assert!(boot[..CUT] == image[..CUT], "the first {CUT} bytes are new");
    assert!(boot[CUT..] == old[CUT..], "the rest is old");

    // Power came back: the download (RAM) is gone, flashing again completes.
    let mut client = reconnect(&phone);
    assert!(client.flash("boot").is_err(), "the download was lost");
    flash(&mut client, "boot", &image);
    assert!(std::fs::read(dir.path().join("boot.img")).unwrap() == image);
}

#[test]
fn phone_fail_refuses_one_flash_without_effect() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["fail@flash:boot#1"]);
    let image = data(256 * KIB, 5);

    let mut client = connect(&phone);
    download(&mut client, &image).unwrap();
    let err = client.flash("boot").unwrap_err();
    match &err {
        FastbootError::DeviceFailed { command, reason } => {
            assert_eq!(command, "flash:boot");
            assert_eq!(reason, "injected fault: command refused");
        }
        other => panic!("expected FAIL, got {other:?}"),
    }
    assert!(std::fs::read(dir.path().join("boot.img")).unwrap() == data(1 << 20, 1));
    // The refused command changed nothing, so the download is still there.
    client.flash("boot").unwrap();
    assert!(peek(&dir.path().join("boot.img"), 0, image.len()) == image);
    assert_eq!(phone.faults_fired(), ["fail@flash:boot#1"]);
}

#[test]
fn phone_stall_leaves_a_command_unanswered_until_the_host_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["stall@getvar:product#1"]);
    let mut client = connect(&phone);
    client.set_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = client.getvar("product").unwrap_err();
    assert!(
        matches!(err, FastbootError::Transport(TransportError::Timeout(_))),
        "{err:?}"
    );
    assert!(started.elapsed() < T);
    drop(client);

    let mut client = reconnect(&phone);
    assert_eq!(
        client.getvar("product").unwrap().as_deref(),
        Some("zte-demo-phone")
    );
    assert_eq!(phone.faults_fired(), ["stall@getvar:product#1"]);
}

#[test]
fn phone_garbage_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["garbage@getvar:serialno#1"]);
    let mut client = connect(&phone);
    let err = client.getvar("serialno").unwrap_err();
    assert!(matches!(err, FastbootError::Protocol { .. }), "{err:?}");
    drop(client);
    let mut client = reconnect(&phone);
    assert_eq!(
        client.getvar("serialno").unwrap().as_deref(),
        Some("FLSIM0001")
    );
    assert_eq!(phone.faults_fired(), ["garbage@getvar:serialno#1"]);
}

#[test]
fn phone_battery_drops_after_the_given_download_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["battery@bytes=64K,percent=5"]);
    let mut client = connect(&phone);
    assert_eq!(client.getvar("battery-soc").unwrap().as_deref(), Some("80"));
    download(&mut client, &data(64 * KIB - 1, 6)).unwrap();
    assert_eq!(
        client.getvar("battery-soc-ok").unwrap().as_deref(),
        Some("yes")
    );
    assert!(phone.faults_fired().is_empty());
    download(&mut client, &data(1, 6)).unwrap();
    assert_eq!(client.getvar("battery-soc").unwrap().as_deref(), Some("5"));
    assert_eq!(
        client.getvar("battery-soc-ok").unwrap().as_deref(),
        Some("no")
    );
    assert_eq!(phone.faults_fired(), ["battery@bytes=65536,percent=5"]);
}

#[test]
fn phone_reenumerate_boots_the_os_and_comes_back_in_fastboot() {
    let dir = tempfile::tempdir().unwrap();
    let phone = phone(dir.path(), &["reenumerate@flash:system#1"]);
    let mut client = connect(&phone);
    // A boot image that announces a version, which the phone reports once it has booted.
    let mut boot = b"FLASHLINE-VERSION=9.9.9\n".to_vec();
    boot.resize(4096, 0);
    flash(&mut client, "boot", &boot);
    assert_eq!(
        client.getvar("version-bootloader").unwrap().as_deref(),
        Some("2.0.0")
    );
    let system = data(128 * KIB, 7);
    download(&mut client, &system).unwrap();
    let err = client.flash("system").unwrap_err();
    assert!(is_disconnect(&err), "{err:?}");
    drop(client);
    assert!(std::fs::read(dir.path().join("system.img")).unwrap() == data(512 << 10, 2));

    let mut client = reconnect(&phone);
    assert_eq!(
        client.getvar("version-bootloader").unwrap().as_deref(),
        Some("9.9.9"),
        "the phone booted in between"
    );
    flash(&mut client, "system", &system);
    assert!(peek(&dir.path().join("system.img"), 0, system.len()) == system);
    assert_eq!(phone.faults_fired(), ["reenumerate@flash:system#1"]);
}

#[test]
fn phone_refuses_a_battery_fault_without_a_battery() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PhoneConfig {
        battery_percent: None,
        faults: plan(&["battery@bytes=0,percent=5"]),
        ..PhoneConfig::default()
    };
    let err = PhoneSim::bind("127.0.0.1:0".parse().unwrap(), dir.path(), cfg)
        .err()
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("reports no battery"), "{err}");
}

#[test]
fn a_phone_refuses_line_noise_its_protocol_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PhoneConfig {
        faults: plan(&["corrupt@bytes=100"]),
        ..PhoneConfig::default()
    };
    let err = PhoneSim::bind("127.0.0.1:0".parse().unwrap(), dir.path(), cfg)
        .err()
        .unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("corrupt@"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The textual form, as `flashline sim … --fault` takes it.

#[test]
fn fault_texts_round_trip_and_bad_ones_are_explained() {
    for text in [
        "disconnect@bytes=1048576",
        "power-loss@bytes=0",
        "fail@flash:boot#1",
        "stall@getvar:product#2",
        "garbage@program#1",
        "battery@bytes=4096,percent=5",
        "reenumerate@flash:system#1",
        "fail@AT+CGMR#3",
    ] {
        let fault: Fault = text.parse().unwrap();
        assert_eq!(fault.to_string(), text);
    }
    assert_eq!(
        "disconnect@bytes=1M".parse::<Fault>().unwrap(),
        Fault::Disconnect {
            after_bytes: 1 << 20
        }
    );
    let err = "fail@flash:boot".parse::<Fault>().unwrap_err();
    assert!(err.to_string().contains("COMMAND#N"), "{err}");
}

#[test]
fn the_cli_passes_faults_to_the_phone() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_flashline");
    let bad = Command::new(bin)
        .args(["sim", "phone", "--fault", "explode@now"])
        .arg("--dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown fault kind \"explode\""));

    let mut child = Command::new(bin)
        .args(["sim", "phone", "--listen", "127.0.0.1:0"])
        .args(["--partition", "boot=64K", "--fault", "fail@download:#1"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut client = Client::new(TcpTransport::connect(line.trim(), T).unwrap());
    client.set_timeout(T);
    let image = data(4096, 12);
    let refused = download(&mut client, &image);
    let again = download(&mut client, &image);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = refused.unwrap_err();
    assert!(err.to_string().contains("injected fault"), "{err}");
    again.unwrap();
}

// ---------------------------------------------------------------------------------------
// The EDL device, driven by the Sahara and Firehose clients over its pseudo-terminal.

#[cfg(unix)]
mod edl {
    use std::io::Cursor;

    use flashline::protocol::firehose::{
        FirehoseClient, FirehoseError, FirehoseTimeouts, SectorRange,
    };
    use flashline::protocol::sahara::{self, SaharaOptions, SaharaOutcome};
    use flashline::sim::edl::{build_test_programmer, EdlConfig, EdlSim, RunningEdl};
    use flashline::transport::serial::SerialTransport;
    use sha2::{Digest, Sha256};

    use super::*;

    /// Where the tests program: 128 KiB well inside LUN 0, away from the GPT.
    const RANGE: SectorRange = SectorRange {
        lun: 0,
        start_sector: 65_536,
        sector_size: 512,
        num_sectors: 256,
    };
    const OFFSET: u64 = 65_536 * 512;
    const LEN: usize = 256 * 512;

    fn programmer() -> Vec<u8> {
        build_test_programmer(b"flashline fault-injection test programmer")
    }

    /// An EDL device with `faults` whose program range holds `old` data.
    fn device(dir: &Path, faults: &[&str]) -> RunningEdl {
        let cfg = EdlConfig {
            faults: plan(faults),
            late_logs: false,
            data_timeout: Duration::from_millis(700),
            ..EdlConfig::default()
        };
        let sim = EdlSim::start(dir, cfg, None).unwrap();
        poke(&sim.lun_path(0), OFFSET, &data(LEN, 1));
        sim
    }

    /// Loads the programmer and configures Firehose, as a flash job starts.
    fn session(sim: &RunningEdl) -> FirehoseClient<SerialTransport> {
        session_at(sim.address())
    }

    /// [`session`] with the device at `address`.
    pub(super) fn session_at(address: &str) -> FirehoseClient<SerialTransport> {
        let mut transport = SerialTransport::open(address).unwrap();
        let image = programmer();
        let options = SaharaOptions {
            hello_timeout: Duration::from_secs(5),
            packet_timeout: T,
            overall_timeout: Duration::from_secs(10),
        };
        let outcome = sahara::upload_programmer(
            &mut transport,
            &mut Cursor::new(&image),
            image.len() as u64,
            &options,
            &mut |_| {},
        )
        .unwrap();
        assert!(
            matches!(outcome, SaharaOutcome::Uploaded { .. }),
            "{outcome:?}"
        );
        let mut client = FirehoseClient::new(transport);
        client.set_timeouts(FirehoseTimeouts {
            response: T,
            data: T,
            finish: Duration::from_secs(1),
            configure_boot: T,
        });
        client.configure("emmc", 64 * 1024).unwrap();
        client
    }

    fn program(
        client: &mut FirehoseClient<SerialTransport>,
        bytes: &[u8],
    ) -> Result<(), FirehoseError> {
        client.program(&RANGE, &mut &bytes[..], &mut |_| {})
    }

    fn range_bytes(sim: &RunningEdl) -> Vec<u8> {
        peek(&sim.lun_path(0), OFFSET, LEN)
    }

    #[test]
    fn a_cut_mid_program_keeps_exactly_the_bytes_that_arrived_and_returns_to_sahara() {
        const CUT: usize = 70_001;
        for kind in ["disconnect", "power-loss"] {
            let dir = tempfile::tempdir().unwrap();
            let fault = format!("{kind}@bytes={CUT}");
            let sim = device(dir.path(), &[&fault]);
            let new = data(LEN, 9);

            let mut client = session(&sim);
            let err = program(&mut client, &new).unwrap_err();
            assert!(
                matches!(err, FirehoseError::Transport(TransportError::Timeout(_))),
                "{kind}: {err:?}"
            );
            drop(client);
            assert_eq!(sim.faults_fired(), vec![fault.clone()]);
            let lun = range_bytes(&sim);
            assert!(
                lun[..CUT] == new[..CUT],
                "{kind}: the first {CUT} bytes are new"
            );
            assert!(lun[CUT..] == data(LEN, 1)[CUT..], "{kind}: the rest is old");

            // The device is back in its boot ROM: the programmer loads again and the
            // re-run completes.
            let mut client = session(&sim);
            program(&mut client, &new).unwrap();
            assert!(range_bytes(&sim) == new, "{kind}");
            let log = sim.commands();
            assert!(
                log.iter().any(|l| l.starts_with("firehose:reboot (")),
                "{log:?}"
            );
        }
    }

    #[test]
    fn a_nak_on_program_writes_nothing_and_the_next_program_works() {
        let dir = tempfile::tempdir().unwrap();
        let sim = device(dir.path(), &["fail@program#1"]);
        let new = data(LEN, 10);
        let mut client = session(&sim);
        match program(&mut client, &new).unwrap_err() {
            FirehoseError::Nak { command, reason } => {
                assert_eq!(command, "program");
                assert!(reason.contains("injected fault"), "{reason}");
            }
            other => panic!("expected a NAK, got {other:?}"),
        }
        assert!(range_bytes(&sim) == data(LEN, 1));
        program(&mut client, &new).unwrap();
        assert!(range_bytes(&sim) == new);
        assert_eq!(sim.faults_fired(), ["fail@program#1"]);
    }

    #[test]
    fn a_stalled_programmer_is_reset_by_its_watchdog() {
        let dir = tempfile::tempdir().unwrap();
        let sim = device(dir.path(), &["stall@getsha256digest#1"]);
        let mut client = session(&sim);
        let err = client.sha256_digest(&RANGE).unwrap_err();
        assert!(
            matches!(err, FirehoseError::Transport(TransportError::Timeout(_))),
            "{err:?}"
        );
        drop(client);
        let mut client = session(&sim);
        let digest = client.sha256_digest(&RANGE).unwrap();
        let expected: [u8; 32] = Sha256::digest(data(LEN, 1)).into();
        assert_eq!(digest, expected);
        assert_eq!(sim.faults_fired(), ["stall@getsha256digest#1"]);
    }

    #[test]
    fn garbage_instead_of_an_answer_is_an_error_and_the_programmer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let sim = device(dir.path(), &["garbage@nop#1"]);
        let mut client = session(&sim);
        let err = client.nop().unwrap_err();
        assert!(
            err.to_string().contains("not UTF-8"),
            "the garbage is read as one broken document: {err}"
        );
        // The programmer itself is fine: a fresh session on the same line works.
        let mut client = FirehoseClient::new(client.into_transport());
        client.configure("emmc", 64 * 1024).unwrap();
        client.nop().unwrap();
        assert_eq!(sim.faults_fired(), ["garbage@nop#1"]);
    }

    #[test]
    fn reenumerate_sends_the_device_back_to_its_boot_rom() {
        let dir = tempfile::tempdir().unwrap();
        let sim = device(dir.path(), &["reenumerate@program#1"]);
        let new = data(LEN, 11);
        let mut client = session(&sim);
        let err = program(&mut client, &new).unwrap_err();
        assert!(
            matches!(err, FirehoseError::Transport(TransportError::Timeout(_))),
            "{err:?}"
        );
        drop(client);
        assert!(range_bytes(&sim) == data(LEN, 1), "nothing was written");
        let mut client = session(&sim);
        program(&mut client, &new).unwrap();
        assert!(range_bytes(&sim) == new);
        assert_eq!(sim.faults_fired(), ["reenumerate@program#1"]);
    }

    #[test]
    fn a_battery_fault_is_refused_in_edl() {
        let cfg = EdlConfig {
            faults: plan(&["battery@bytes=0,percent=5"]),
            ..EdlConfig::default()
        };
        let err = EdlSim::new(Path::new("/nonexistent"), cfg, None)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("reports no battery"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// The modem, driven by the AT client over its pseudo-terminal.

#[cfg(unix)]
mod modem {
    use std::io::Read;

    use flashline::device::bench;
    use flashline::protocol::at::{AtClient, AtError, BatteryReading};
    use flashline::sim::bench::{VirtualModem, ZTE_EDL};
    use flashline::sim::edl::EdlConfig;
    use flashline::sim::modem::{ModemConfig, ModemSim, RunningModem};
    use flashline::transport::serial::SerialTransport;

    use super::*;

    fn start(cfg: ModemConfig, faults: &[&str]) -> RunningModem {
        let cfg = ModemConfig {
            faults: plan(faults),
            ..cfg
        };
        ModemSim::start(cfg, None, Box::new(|| {})).unwrap()
    }

    fn client(address: &str) -> AtClient<SerialTransport> {
        let mut client = AtClient::new(SerialTransport::open(address).unwrap());
        client.set_timeout(Duration::from_millis(500));
        client
    }

    #[test]
    fn a_failed_at_command_has_no_effect_and_the_next_is_answered() {
        // AT commands are matched without regard to case.
        let modem = start(ModemConfig::dongle(), &["fail@at+cgmr#1"]);
        let mut client = client(modem.address());
        let err = client.command("AT+CGMR").unwrap_err();
        assert!(
            matches!(&err, AtError::Error { command } if command == "AT+CGMR"),
            "{err:?}"
        );
        assert_eq!(client.command("AT+CGMR").unwrap(), ["BD_MF833VV1.0.0B08"]);
        assert_eq!(modem.faults_fired(), ["fail@at+cgmr#1"]);
    }

    #[test]
    fn a_stalled_at_command_times_out_and_the_next_is_answered() {
        let modem = start(ModemConfig::dongle(), &["stall@AT+CGMM#1"]);
        let mut client = client(modem.address());
        let err = client.command("AT+CGMM").unwrap_err();
        assert!(matches!(err, AtError::Timeout { .. }), "{err:?}");
        assert_eq!(client.command("AT+CGMM").unwrap(), ["MF833V"]);
        assert_eq!(modem.commands(), ["ATE0", "AT+CGMM", "AT+CGMM"]);
        assert_eq!(modem.faults_fired(), ["stall@AT+CGMM#1"]);
    }

    #[test]
    fn garbage_arrives_instead_of_the_answer() {
        let modem = start(
            ModemConfig {
                echo: false,
                ..ModemConfig::dongle()
            },
            &["garbage@ATI#1"],
        );
        let mut port = serialport::new(modem.tty_path(), 115_200)
            .timeout(T)
            .open_native()
            .unwrap();
        let answer = |port: &mut serialport::TTYPort, len: usize| {
            port.write_all(b"ATI\r").unwrap();
            let mut got = vec![0u8; len];
            port.read_exact(&mut got).unwrap();
            got
        };
        let garbage = answer(&mut port, 64);
        assert!(garbage.ends_with(b"\r\n"), "{garbage:02x?}");
        assert!(garbage[..62].iter().all(|&b| b >= 0x80), "{garbage:02x?}");
        let expected = b"\r\nManufacturer: ZTE CORPORATION\r\n";
        assert_eq!(answer(&mut port, expected.len()), expected);
        assert_eq!(modem.faults_fired(), ["garbage@ATI#1"]);
    }

    #[test]
    fn a_hotspot_battery_drops_after_the_given_bytes() {
        // "ATE0\r" and "AT+CBC\r" are 12 bytes; the drop comes with the next line.
        let modem = start(ModemConfig::hotspot(), &["battery@bytes=13,percent=5"]);
        let mut client = client(modem.address());
        let reading = |percent| BatteryReading::Percent {
            percent,
            charging: false,
        };
        assert_eq!(client.battery().unwrap(), reading(80));
        assert!(modem.faults_fired().is_empty());
        assert_eq!(client.battery().unwrap(), reading(5));
        assert_eq!(modem.faults_fired(), ["battery@bytes=13,percent=5"]);
    }

    #[test]
    fn faults_a_modem_cannot_have_are_refused() {
        for (cfg, fault, why) in [
            (
                ModemConfig::dongle(),
                "battery@bytes=0,percent=5",
                "without a battery",
            ),
            (ModemConfig::hotspot(), "disconnect@bytes=10", "EDL side"),
            (ModemConfig::hotspot(), "power-loss@bytes=10", "EDL side"),
        ] {
            let cfg = ModemConfig {
                faults: plan(&[fault]),
                ..cfg
            };
            let err = ModemSim::start(cfg, None, Box::new(|| {})).err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(why), "{fault}: {err}");
        }
    }

    #[test]
    fn reenumerate_switches_to_edl_without_being_asked() {
        let dir = tempfile::tempdir().unwrap();
        let bench_dir = dir.path().join("bench");
        let cfg = ModemConfig {
            faults: plan(&["reenumerate@AT+CGMR#1"]),
            ..ModemConfig::dongle()
        };
        let modem = VirtualModem::start(
            cfg,
            EdlConfig::default(),
            &dir.path().join("luns"),
            &bench_dir,
        )
        .unwrap();
        let mut client = client(modem.address());
        assert_eq!(client.command("AT+CGMM").unwrap(), ["MF833V"]);
        let err = client.command("AT+CGMR").unwrap_err();
        assert!(
            matches!(err, AtError::Timeout { .. } | AtError::Transport(_)),
            "{err:?}"
        );
        drop(client);

        // The modem left the bench and came back with its download-mode identity.
        let deadline = Instant::now() + Duration::from_secs(5);
        let entry = loop {
            let entries = bench::list(&bench_dir);
            if let [entry] = &entries[..] {
                if (entry.vid, entry.pid) == ZTE_EDL {
                    break entry.clone();
                }
            }
            assert!(Instant::now() < deadline, "no EDL device: {entries:?}");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(entry.serial, "FLMODEM0001");
        let mut firehose = super::edl::session_at(&entry.address);
        firehose.nop().unwrap();
        drop(firehose);
        assert_eq!(modem.faults_fired(), ["reenumerate@AT+CGMR#1"]);
        modem.stop();
    }
}
