//! EDL over raw USB bulk endpoints, without USB: flashline's EDL driver on a
//! [`BulkStream`] talks to the virtual EDL device through an in-memory "cable" that carries
//! USB packets the way a bulk pipe does (a transfer ends on a short or zero-length packet).
//! The device end records every transfer it receives, so the tests check where the host's
//! stream ends its transfers, not only that the bytes arrive.
#![cfg(unix)]

use std::collections::VecDeque;
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use flashline::device::edl::EdlDriver;
use flashline::device::{Driver, ImageSource, SendReader, Target};
use flashline::sim::edl::{build_test_programmer, lun_path, EdlConfig, EdlSim, Line};
use flashline::transport::usb::{BulkPipe, BulkStream};
use flashline::transport::{Transport, TransportError};

/// Longest wait of the device end before it looks at its stop flag again.
const SLICE: Duration = Duration::from_millis(20);

/// Packets in flight one way, and the transfers they made, as the receiver saw them.
#[derive(Default)]
struct Lane {
    packets: VecDeque<Vec<u8>>,
    /// Lengths of completed transfers (a short or zero-length packet ended each).
    transfers: Vec<usize>,
    /// Bytes of the transfer in progress.
    current: usize,
}

/// Both directions of one USB cable with `packet`-byte packets.
struct Cable {
    packet: usize,
    to_device: Mutex<Lane>,
    to_host: Mutex<Lane>,
    moved: Condvar,
}

impl Cable {
    fn new(packet: usize) -> Arc<Cable> {
        Arc::new(Cable {
            packet,
            to_device: Mutex::default(),
            to_host: Mutex::default(),
            moved: Condvar::new(),
        })
    }

    /// Queues one transfer: full packets, then a short one if the length is not a whole
    /// number of packets; `zlp` ends a whole-packet transfer with a zero-length packet.
    fn send(&self, lane: &Mutex<Lane>, data: &[u8], zlp: bool) {
        let mut lane = lane.lock().unwrap();
        lane.packets
            .extend(data.chunks(self.packet).map(<[u8]>::to_vec));
        if data.is_empty() || (zlp && data.len().is_multiple_of(self.packet)) {
            lane.packets.push_back(Vec::new());
        }
        self.moved.notify_all();
    }

    /// Receives into `buf` until a short packet ends the transfer or `buf` is full, as a
    /// bulk IN request does. A packet larger than the room left is the host controller's
    /// "babble" error. Returns `None` if nothing arrived before `timeout`.
    fn receive(&self, lane: &Mutex<Lane>, buf: &mut [u8], timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut lane = lane.lock().unwrap();
        while lane.packets.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lane = self.moved.wait_timeout(lane, left).unwrap().0;
        }
        let mut n = 0;
        while let Some(packet) = lane.packets.front() {
            assert!(
                packet.len() <= buf.len() - n,
                "babble: the request was not whole packets"
            );
            let packet = lane.packets.pop_front().unwrap();
            buf[n..n + packet.len()].copy_from_slice(&packet);
            n += packet.len();
            lane.current += packet.len();
            if packet.len() < self.packet {
                let done = std::mem::take(&mut lane.current);
                lane.transfers.push(done);
                break;
            }
            if n == buf.len() {
                break;
            }
        }
        Some(n)
    }
}

/// The host's end: the pipe [`BulkStream`] runs on.
struct HostPipe(Arc<Cable>);

impl BulkPipe for HostPipe {
    fn out_packet_size(&self) -> usize {
        self.0.packet
    }
    fn in_packet_size(&self) -> usize {
        self.0.packet
    }
    fn write_bulk(&mut self, data: &[u8], _: Duration) -> Result<usize, TransportError> {
        self.0.send(&self.0.to_device, data, false);
        Ok(data.len())
    }
    fn read_bulk(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        self.0
            .receive(&self.0.to_host, buf, timeout)
            .ok_or(TransportError::Timeout(timeout))
    }
}

/// The device's end, as a gadget's bulk endpoints: each write is one transfer, ended by a
/// ZLP when it is a whole number of packets; reads keep the part of a packet that did not
/// fit for the next read.
struct DeviceEnd {
    cable: Arc<Cable>,
    stop: Arc<AtomicBool>,
    packet: Vec<u8>,
    unread: std::ops::Range<usize>,
}

impl Transport for DeviceEnd {
    fn write(&mut self, data: &[u8], _: Duration) -> Result<(), TransportError> {
        self.cable.send(&self.cable.to_host, data, true);
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        if !self.unread.is_empty() {
            let n = self.unread.len().min(buf.len());
            buf[..n].copy_from_slice(&self.packet[self.unread.start..self.unread.start + n]);
            self.unread.start += n;
            return Ok(n);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(TransportError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(timeout));
            }
            let room = buf.len() / self.cable.packet * self.cable.packet;
            let got = if room > 0 {
                self.cable
                    .receive(&self.cable.to_device, &mut buf[..room], left.min(SLICE))
            } else {
                let got =
                    self.cable
                        .receive(&self.cable.to_device, &mut self.packet, left.min(SLICE));
                got.map(|n| {
                    let take = n.min(buf.len());
                    buf[..take].copy_from_slice(&self.packet[..take]);
                    self.unread = take..n;
                    take
                })
            };
            match got {
                Some(0) | None => continue,
                Some(n) => return Ok(n),
            }
        }
    }

    fn address(&self) -> &str {
        "usb-gadget"
    }
}

impl Line for DeviceEnd {
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
    fn discard_input(&mut self) {
        self.unread = 0..0;
        self.cable.to_device.lock().unwrap().packets.clear();
    }
}

/// An image held in memory whose send reader checks nothing.
struct Mem(Vec<u8>);

struct Plain(Cursor<Vec<u8>>);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl SendReader for Plain {
    fn verify(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

impl ImageSource for Mem {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(self.0.clone())))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Plain(Cursor::new(self.0.clone()))))
    }
}

/// Loads a programmer, writes `image` at sector 2048 of LUN 0 and reads it back, over a
/// cable with `packet`-byte packets; checks the bytes on the device and the transfers it
/// received.
fn flash_over_usb(packet: usize, image: &[u8], max_payload: u32) {
    let dir = tempfile::tempdir().unwrap();
    let cable = Cable::new(packet);
    let device_cable = Arc::clone(&cable);
    let cfg = EdlConfig {
        max_payload_to_target: max_payload,
        ..EdlConfig::default()
    };
    let sim = EdlSim::on_line(dir.path(), cfg, move |stop| {
        Ok(Box::new(DeviceEnd {
            cable: device_cable,
            stop,
            packet: vec![0; packet],
            unread: 0..0,
        }) as Box<dyn Line>)
    })
    .unwrap()
    .spawn()
    .unwrap();

    let stream = BulkStream::new(HostPipe(Arc::clone(&cable)), "usb:1-1".into()).unwrap();
    let mut driver = EdlDriver::new(stream, Some("FLMODEM0001".into()), false);
    // Large enough that Sahara serves its segments in several writes.
    let programmer = build_test_programmer(&vec![0x5a; 200 * 1024]);
    driver
        .load_programmer(&Mem(programmer.clone()), "emmc")
        .unwrap();
    let info = driver.identify().unwrap();
    assert_eq!(info.serial.as_deref(), Some("FLMODEM0001"));
    assert!(info.layout.iter().any(|p| p.label == "modem"));

    let sectors = (image.len() as u64).div_ceil(512);
    let target = Target::Sectors {
        lun: 0,
        start: 2048,
        count: sectors,
        sector_size: 512,
    };
    driver
        .write_image(&target, &Mem(image.to_vec()), &mut |_| {})
        .unwrap();
    let mut back = Vec::new();
    let digest = driver.read(&target, &mut back, &mut |_| {}).unwrap();
    let mut padded = image.to_vec();
    padded.resize((sectors * 512) as usize, 0);
    assert_eq!(back, padded);
    assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&padded)));
    let lun = std::fs::read(lun_path(dir.path(), 0)).unwrap();
    assert_eq!(&lun[2048 * 512..2048 * 512 + padded.len()], &padded[..]);

    // What the device received, transfer by transfer: after HELLO_RESP, each READ_DATA
    // answer is exactly one transfer of the length asked for (no ZLP or short packet cut
    // a segment that the host wrote in pieces), then DONE.
    let commands = sim.commands();
    let asked: Vec<usize> = commands
        .iter()
        .filter_map(|c| c.strip_prefix("sahara:read-data "))
        .map(|c| c.rsplit("len=").next().unwrap().parse().unwrap())
        .collect();
    let transfers = cable.to_device.lock().unwrap().transfers.clone();
    assert_eq!(transfers[0], 48, "HELLO_RESP");
    assert_eq!(&transfers[1..=asked.len()], &asked[..]);
    assert_eq!(transfers[asked.len() + 1], 8, "DONE");
    let loaded = format!(
        "sahara:programmer len={} sha256={}",
        programmer.len(),
        hex::encode(Sha256::digest(&programmer))
    );
    assert!(commands.contains(&loaded), "{commands:?}");
    // The program data went out in payload-sized writes but reached the device as one
    // transfer of the whole range.
    assert!(
        transfers.contains(&padded.len()),
        "no {}-byte data transfer in {transfers:?}",
        padded.len()
    );
    sim.stop();
}

#[test]
fn flashes_over_high_speed_packets() {
    // 300 KiB in 64 KiB payloads: the data phase is several writes and a whole number
    // of packets, so its end needs a ZLP.
    let image: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    flash_over_usb(512, &image, 64 * 1024);
}

#[test]
fn flashes_over_full_speed_packets_with_a_partial_last_sector() {
    let image: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
    flash_over_usb(64, &image, 1024 * 1024);
}
