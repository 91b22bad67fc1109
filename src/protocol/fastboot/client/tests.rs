use super::*;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// One step of a scripted exchange.
#[derive(Debug)]
enum Step {
    /// The host must write exactly this message.
    Host(&'static [u8]),
    /// The host must write this many data-phase bytes, in any number of writes.
    HostData(usize),
    /// The device sends this message.
    Device(Vec<u8>),
    /// The device says nothing: the host's read times out.
    Silence,
}
use Step::{Device, Host, HostData, Silence};

fn dev(message: &str) -> Step {
    Device(message.as_bytes().to_vec())
}

/// An in-memory device that follows a script and fails the test on any deviation.
#[derive(Default)]
struct Scripted {
    steps: VecDeque<Step>,
    data: Vec<u8>,
    data_writes: Vec<usize>,
}

impl Transport for Scripted {
    fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
        match self.steps.front_mut() {
            Some(Host(expected)) => {
                assert_eq!(
                    String::from_utf8_lossy(data),
                    String::from_utf8_lossy(expected)
                );
                self.steps.pop_front();
            }
            Some(HostData(left)) => {
                assert!(
                    data.len() <= *left,
                    "{} bytes past the data phase",
                    data.len() - *left
                );
                *left -= data.len();
                self.data.extend_from_slice(data);
                self.data_writes.push(data.len());
                if *left == 0 {
                    self.steps.pop_front();
                }
            }
            other => panic!(
                "host wrote {} bytes while the script has {other:?}",
                data.len()
            ),
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        match self.steps.pop_front() {
            Some(Device(message)) if message.len() > buf.len() => {
                Err(TransportError::MessageTooLarge {
                    len: message.len() as u64,
                    max: buf.len(),
                })
            }
            Some(Device(message)) => {
                buf[..message.len()].copy_from_slice(&message);
                Ok(message.len())
            }
            None | Some(Silence) => Err(TransportError::Timeout(timeout)),
            Some(other) => panic!("host read while the script has {other:?}"),
        }
    }

    fn address(&self) -> &str {
        "scripted"
    }
}

fn client(steps: Vec<Step>) -> Client<Scripted> {
    Client::new(Scripted {
        steps: steps.into(),
        ..Scripted::default()
    })
}

fn assert_done(client: &Client<Scripted>) {
    assert!(
        client.transport().steps.is_empty(),
        "unplayed: {:?}",
        client.transport().steps
    );
}

/// Collects what reaches the info callback.
fn record_info(client: &mut Client<Scripted>) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    client.on_info(Box::new(move |text| {
        sink.lock().unwrap().push(text.to_string())
    }));
    seen
}

#[test]
fn getvar_reads_values_and_treats_fail_and_empty_okay_as_unknown() {
    let mut c = client(vec![
        Host(b"getvar:product"),
        dev("OKAYphone"),
        Host(b"getvar:secure"),
        dev("FAILunknown variable"),
        Host(b"getvar:unlocked"),
        dev("OKAY"),
        Host(b"getvar:partition-size:boot_a"),
        dev("OKAY 0x4000000"),
    ]);
    assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
    assert_eq!(c.getvar("secure").unwrap(), None);
    assert_eq!(c.getvar("unlocked").unwrap(), None);
    assert_eq!(
        c.getvar("partition-size:boot_a").unwrap().as_deref(),
        Some("0x4000000")
    );
    assert_done(&c);
}

#[test]
fn getvar_all_keeps_arguments_and_tolerates_spaces() {
    let mut c = client(vec![
        Host(b"getvar:all"),
        dev("INFOversion:0.4"),
        dev("INFOpartition-size:boot_a: 0x4000000"),
        dev("INFOpartition-type : system_b : ext4"),
        dev("INFOhas-slot:boot:yes"),
        dev("INFOsystem-fingerprint:google/p/p:14/AP1A/1:user/release-keys"),
        dev("INFOall variables follow"),
        dev("OKAY"),
    ]);
    let seen = record_info(&mut c);
    let vars = c.getvar_all().unwrap();
    let expected = [
        ("version", "0.4"),
        ("partition-size:boot_a", "0x4000000"),
        ("partition-type:system_b", "ext4"),
        ("has-slot:boot", "yes"),
        (
            "system-fingerprint",
            "google/p/p:14/AP1A/1:user/release-keys",
        ),
    ];
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(vars, expected);
    assert_eq!(*seen.lock().unwrap(), ["all variables follow"]);
    assert_done(&c);
}

#[test]
fn getvar_all_keeps_split_parts_as_sent_and_reads_a_variable_in_the_final_okay() {
    let mut c = client(vec![
        Host(b"getvar:all"),
        dev("INFOkernel.version[2]: ) #1 SMP PREEMPT CST"),
        dev("INFOkernel.version[3]:  2017"),
        dev("INFO  version-preloader:"),
        dev("OKAYunlocked:yes"),
        Host(b"getvar:all"),
        dev("INFOproduct:rk3229"),
        dev("OKAYDone!"),
    ]);
    let vars = c.getvar_all().unwrap();
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        vars,
        [
            ("kernel.version[2]", ") #1 SMP PREEMPT CST"),
            ("kernel.version[3]", " 2017"),
            ("version-preloader", ""),
            ("unlocked", "yes"),
        ]
    );
    assert_eq!(
        c.getvar_all().unwrap(),
        [("product".into(), "rk3229".into())]
    );
    assert_done(&c);
}

#[test]
fn a_stalled_getvar_all_does_not_poison_the_session() {
    let mut c = client(vec![
        Host(b"getvar:all"),
        dev("INFOproduct:phone"),
        // The device stops mid-listing, then finishes late, after the host gave up.
        Silence,
        dev("INFOserialno:123"),
        dev("OKAY"),
        Silence,
        Host(b"getvar:product"),
        dev("OKAYphone"),
    ]);
    assert!(matches!(
        c.getvar_all(),
        Err(FastbootError::Transport(TransportError::Timeout(_)))
    ));
    assert!(matches!(
        c.getvar("product"),
        Err(FastbootError::OutOfStep { .. })
    ));
    // The late lines are read and dropped, not taken as the answer to the next question.
    assert!(c.resync(Duration::from_millis(10)));
    assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
    assert_done(&c);
}

#[test]
fn info_and_text_are_passed_on_until_okay() {
    let mut c = client(vec![
        Host(b"erase:userdata"),
        dev("INFOerasing..."),
        dev("TEXT50%"),
        Device(Vec::new()),
        dev("INFOdone"),
        dev("OKAY"),
    ]);
    let seen = record_info(&mut c);
    c.erase("userdata", None).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["erasing...", "50%", "done"]);
    assert_done(&c);
}

#[test]
fn device_failure_names_command_and_reason_and_keeps_the_session() {
    let mut c = client(vec![
        Host(b"flash:boot_a"),
        dev("FAILpartition is locked"),
        Host(b"set_active:b"),
        dev("OKAY"),
    ]);
    let err = c.flash("boot_a").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`flash:boot_a` failed on the device: partition is locked"
    );
    c.set_active("_b").unwrap();
    assert_done(&c);
}

#[test]
fn download_streams_in_large_chunks() {
    let size = 2 * DOWNLOAD_CHUNK + 1000;
    let image: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut c = client(vec![
        Host(b"download:002003e8"),
        dev("DATA002003e8"),
        HostData(size),
        dev("OKAY"),
        Host(b"flash:boot"),
        dev("OKAY"),
    ]);
    c.download(size as u32, |w| {
        // Small writes coalesce; a whole-chunk write then goes out unbuffered.
        w.write_all(&image[..10])?;
        w.write_all(&image[10..DOWNLOAD_CHUNK])?;
        w.write_all(&image[DOWNLOAD_CHUNK..])
    })
    .unwrap();
    c.flash("boot").unwrap();
    assert_done(&c);
    let device = c.into_transport();
    assert_eq!(device.data_writes, [DOWNLOAD_CHUNK, DOWNLOAD_CHUNK, 1000]);
    assert!(device.data == image);
}

#[test]
fn a_data_length_other_than_announced_is_a_protocol_error() {
    let mut c = client(vec![Host(b"download:00000010"), dev("DATA00000008")]);
    let err = c.download(16, |w| w.write_all(&[0; 16])).unwrap_err();
    assert!(
        matches!(&err, FastbootError::Protocol { command, detail }
            if command == "download:00000010" && detail.contains("ready for 8 bytes")),
        "{err}"
    );
    // The device now waits for 8 bytes: nothing else may be sent.
    assert!(matches!(
        c.getvar("product"),
        Err(FastbootError::OutOfStep { .. })
    ));
    assert_done(&c);
}

#[test]
fn a_short_feed_is_padded_so_the_session_goes_on() {
    let mut c = client(vec![
        Host(b"download:00000010"),
        dev("DATA00000010"),
        HostData(16),
        dev("OKAY"),
        Host(b"getvar:product"),
        dev("OKAYphone"),
    ]);
    match c.download(16, |w| w.write_all(&[7; 10])) {
        Err(FastbootError::Abandoned { cause }) => assert!(
            matches!(
                *cause,
                FastbootError::ShortDownload {
                    expected: 16,
                    written: 10,
                }
            ),
            "{cause}"
        ),
        other => panic!("expected an abandoned download, got {other:?}"),
    }
    // The device got all 16 bytes it was promised and is ready for the next command.
    assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
    assert_eq!(c.transport().data, [[7u8; 10].as_slice(), &[0; 6]].concat());
    assert_done(&c);
}

#[test]
fn a_long_feed_sends_only_the_announced_bytes() {
    let mut c = client(vec![
        Host(b"download:00000010"),
        dev("DATA00000010"),
        HostData(16),
        dev("OKAY"),
        Host(b"getvar:product"),
        dev("OKAYphone"),
    ]);
    let err = c.download(16, |w| w.write_all(&[1; 20])).unwrap_err();
    assert!(
        matches!(err, FastbootError::LongDownload { expected: 16 }),
        "{err}"
    );
    // The device got exactly its 16 bytes and answered, so the session goes on.
    assert_eq!(c.getvar("product").unwrap().as_deref(), Some("phone"));
    assert_eq!(c.transport().data, [1; 16]);
    assert_done(&c);
}

#[test]
fn a_failing_source_is_reported_as_such_and_nothing_of_it_is_sent() {
    let mut c = client(vec![
        Host(b"download:00200010"),
        dev("DATA00200010"),
        HostData(DOWNLOAD_CHUNK * 2 + 16),
        dev("OKAY"),
    ]);
    let err = c
        .download((DOWNLOAD_CHUNK * 2 + 16) as u32, |w| {
            // One chunk goes out, half of the next is buffered, then the source fails:
            // the buffered half is dropped and zeros are sent in its place.
            w.write_all(&vec![5; DOWNLOAD_CHUNK + DOWNLOAD_CHUNK / 2])?;
            Err(io::Error::other("disk on fire"))
        })
        .unwrap_err();
    assert!(
        matches!(&err, FastbootError::Abandoned { cause } if matches!(**cause, FastbootError::Source(_))),
        "{err}"
    );
    assert!(err.to_string().contains("disk on fire"), "{err}");
    let data = &c.transport().data;
    assert!(data[..DOWNLOAD_CHUNK].iter().all(|&b| b == 5));
    assert!(data[DOWNLOAD_CHUNK..].iter().all(|&b| b == 0));
    assert_done(&c);
}

#[test]
fn download_refused_by_the_device() {
    let mut c = client(vec![Host(b"download:10000000"), dev("FAILdata too large")]);
    let err = c
        .download(0x1000_0000, |_| panic!("no data phase after FAIL"))
        .unwrap_err();
    assert!(matches!(err, FastbootError::DeviceFailed { .. }), "{err}");
    assert_done(&c);
}

#[test]
fn data_where_no_data_phase_exists_is_a_protocol_error() {
    let mut c = client(vec![Host(b"getvar:product"), dev("DATA00000100")]);
    let err = c.getvar("product").unwrap_err();
    assert!(matches!(err, FastbootError::Protocol { .. }), "{err}");
}

#[test]
fn unknown_status_is_a_protocol_error_naming_it() {
    let mut c = client(vec![Host(b"reboot"), dev("WHAT is this")]);
    let err = c.reboot().unwrap_err();
    assert!(
        matches!(&err, FastbootError::Protocol { command, detail }
            if command == "reboot" && detail.contains("WHAT")),
        "{err}"
    );
}

#[test]
fn oversized_responses_are_refused_by_the_transport() {
    let mut long = b"OKAY".to_vec();
    long.resize(MAX_RESPONSE_LEN + 1, b'x');
    let mut c = client(vec![Host(b"getvar:product"), Device(long)]);
    assert!(matches!(
        c.getvar("product"),
        Err(FastbootError::Transport(TransportError::MessageTooLarge {
            max: 256,
            ..
        }))
    ));
}

#[test]
fn an_info_flood_is_cut_off() {
    let mut steps = vec![Host(b"continue")];
    steps.extend((0..=MAX_INFO_MESSAGES).map(|_| dev("INFOspam")));
    let mut c = client(steps);
    let err = c.continue_boot().unwrap_err();
    assert!(
        matches!(&err, FastbootError::InfoFlood { command, limit }
            if command == "continue" && *limit == MAX_INFO_MESSAGES),
        "{err}"
    );
    assert_done(&c);
}

#[test]
fn writes_get_time_by_their_bytes_and_short_commands_a_budget() {
    assert_eq!(write_deadline(0), WRITE_BASE);
    // 1 GiB at a slow eMMC's 5 MB/s: 60 s + 214.7 s.
    let gib = write_deadline(1 << 30).as_secs_f64();
    assert!((274.0..275.0).contains(&gib), "{gib}");
    let mut c = client(vec![]);
    c.set_timeout(Duration::from_secs(2));
    assert_eq!(c.short_wait().limit, Duration::from_secs(8));
    assert_eq!(
        c.write_wait(0).silence,
        WRITE_BASE,
        "--timeout does not shorten writes"
    );
    c.set_timeout(Duration::from_secs(600));
    assert_eq!(
        c.write_wait(0).limit,
        Duration::from_secs(600),
        "nor is shorter than it"
    );
}

#[test]
fn silence_is_a_timeout() {
    let mut c = client(vec![Host(b"reboot-bootloader")]);
    assert!(matches!(
        c.reboot_bootloader(),
        Err(FastbootError::Transport(TransportError::Timeout(_)))
    ));
}

#[test]
fn raw_commands_return_the_okay_payload_and_bad_ones_are_not_sent() {
    let mut c = client(vec![Host(b"oem device-info"), dev("OKAYunlocked")]);
    assert_eq!(c.raw("oem device-info").unwrap(), "unlocked");
    assert!(matches!(
        c.raw("oem x\nflash:boot"),
        Err(FastbootError::InvalidCommand { .. })
    ));
    assert!(matches!(
        c.raw(&"o".repeat(MAX_COMMAND_LEN + 1)),
        Err(FastbootError::InvalidCommand { .. })
    ));
    assert_done(&c);
}
