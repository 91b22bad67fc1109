//! The fastboot client over real TCP sockets against a scripted device on 127.0.0.1.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use flashline::protocol::fastboot::client::{Client, FastbootError, DOWNLOAD_CHUNK};
use flashline::transport::tcp::TcpTransport;
use flashline::transport::{Transport, TransportError};

const T: Duration = Duration::from_secs(5);

/// The device end of one connection, speaking FB01 frames.
struct Device(TcpStream);

impl Device {
    fn handshake(&mut self) {
        let mut hello = [0u8; 4];
        self.0.read_exact(&mut hello).unwrap();
        assert_eq!(&hello, b"FB01");
        self.0.write_all(b"FB01").unwrap();
    }

    fn frame(&mut self) -> Vec<u8> {
        let mut header = [0u8; 8];
        self.0.read_exact(&mut header).unwrap();
        let len = u64::from_be_bytes(header);
        assert!(len <= 2 * DOWNLOAD_CHUNK as u64, "frame of {len} bytes");
        let mut payload = vec![0u8; len as usize];
        self.0.read_exact(&mut payload).unwrap();
        payload
    }

    fn expect(&mut self, command: &str) {
        assert_eq!(String::from_utf8(self.frame()).unwrap(), command);
    }

    fn send(&mut self, message: &str) {
        self.0
            .write_all(&(message.len() as u64).to_be_bytes())
            .unwrap();
        self.0.write_all(message.as_bytes()).unwrap();
    }
}

/// Runs `script` as the device behind a fresh listener; returns its address.
fn device<R: Send + 'static>(
    script: impl FnOnce(Device) -> R + Send + 'static,
) -> (String, thread::JoinHandle<R>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = thread::spawn(move || script(Device(listener.accept().unwrap().0)));
    (address, handle)
}

#[test]
fn getvar_download_and_flash_over_tcp() {
    const SIZE: usize = 3 << 20;
    let image: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 256) as u8).collect();
    let (address, phone) = device(|mut d| {
        d.handshake();
        d.expect("getvar:product");
        d.send("OKAYloopphone");
        d.expect("download:00300000");
        d.send("DATA00300000");
        let mut received = Vec::new();
        let mut frames = 0;
        while received.len() < SIZE {
            received.extend(d.frame());
            frames += 1;
        }
        d.send("OKAY");
        d.expect("flash:boot");
        d.send("INFOwriting 'boot'");
        d.send("OKAY");
        (received, frames)
    });

    let transport = TcpTransport::connect(&address, T).unwrap();
    let mut client = Client::new(transport);
    client.set_timeout(T);
    let info = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&info);
    client.on_info(Box::new(move |text| {
        sink.lock().unwrap().push(text.to_string())
    }));

    assert_eq!(
        client.getvar("product").unwrap().as_deref(),
        Some("loopphone")
    );
    client
        .download(SIZE as u32, |w| io::copy(&mut &image[..], w).map(drop))
        .unwrap();
    client.flash("boot").unwrap();

    let (received, frames) = phone.join().unwrap();
    assert!(received == image, "the device received different bytes");
    assert_eq!(frames, SIZE / DOWNLOAD_CHUNK);
    assert_eq!(*info.lock().unwrap(), ["writing 'boot'"]);
    assert_eq!(client.transport().address(), format!("tcp:{address}"));
}

#[test]
fn a_device_with_the_wrong_handshake_is_refused() {
    let (address, phone) = device(|mut d| {
        let mut hello = [0u8; 4];
        d.0.read_exact(&mut hello).unwrap();
        d.0.write_all(b"XXXX").unwrap();
    });
    match TcpTransport::connect(&address, T) {
        Err(TransportError::Handshake(message)) => {
            assert!(message.contains("XXXX"), "{message}")
        }
        other => panic!("expected a handshake error, got {other:?}"),
    }
    phone.join().unwrap();
}

#[test]
fn a_device_closing_mid_response_is_a_disconnect_not_a_hang() {
    let (address, phone) = device(|mut d| {
        d.handshake();
        d.expect("getvar:product");
        // Announce 13 bytes, send 4, hang up.
        d.0.write_all(&13u64.to_be_bytes()).unwrap();
        d.0.write_all(b"OKAY").unwrap();
    });
    let mut client = Client::new(TcpTransport::connect(&address, T).unwrap());
    client.set_timeout(Duration::from_secs(30));
    let started = Instant::now();
    let result = client.getvar("product");
    assert!(
        matches!(
            result,
            Err(FastbootError::Transport(TransportError::Disconnected))
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < T, "took {:?}", started.elapsed());
    phone.join().unwrap();
}

#[test]
fn a_device_that_leaves_right_after_reboot_has_rebooted() {
    // The OKAY is lost when the device resets at once; a FAIL is still an error.
    let (address, peer) = device(|mut d: Device| {
        d.handshake();
        d.expect("reboot");
    });
    let mut client = Client::new(TcpTransport::connect(&address, T).unwrap());
    client.reboot().unwrap();
    peer.join().unwrap();

    let (address, peer) = device(|mut d: Device| {
        d.handshake();
        d.expect("reboot-bootloader");
        d.send("FAILlocked");
    });
    let mut client = Client::new(TcpTransport::connect(&address, T).unwrap());
    let err = client.reboot_bootloader().unwrap_err();
    peer.join().unwrap();
    assert!(matches!(err, FastbootError::DeviceFailed { .. }), "{err}");
}
