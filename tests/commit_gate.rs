//! "Verify what you send": the fastboot driver hashes the bytes on their way to the device
//! and does not send the command that commits an image when they differ from the signed ones.

use std::io::{Cursor, Read};

use flashline::device::fastboot::FastbootDriver;
use flashline::device::quirks::Quirks;
use flashline::device::{DeviceError, Driver, ImageSource, SendReader, Target};
use flashline::sim::{PhoneConfig, PhoneSim};
use flashline::transport::tcp::TcpTransport;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

/// An image whose send reader yields `sent` while the signature covers `signed`.
struct Swapped {
    signed: Vec<u8>,
    sent: Vec<u8>,
}

struct Hashing {
    inner: Cursor<Vec<u8>>,
    hasher: Sha256,
    expected: [u8; 32],
}

impl Read for Hashing {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl SendReader for Hashing {
    fn verify(self: Box<Self>) -> Result<(), String> {
        if self.hasher.finalize().as_slice() == self.expected {
            Ok(())
        } else {
            Err("sha256 of the bytes sent differs from the signed one".into())
        }
    }
}

impl ImageSource for Swapped {
    fn len(&self) -> u64 {
        self.signed.len() as u64
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(Cursor::new(self.signed.clone())))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Hashing {
            inner: Cursor::new(self.sent.clone()),
            hasher: Sha256::new(),
            expected: Sha256::digest(&self.signed).into(),
        }))
    }
}

fn attempt(max_download_size: u32, image_len: usize) -> (Vec<String>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let phone = PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        dir.path(),
        PhoneConfig {
            max_download_size,
            partitions: vec![("boot".into(), 8 * MIB as u64)],
            ..PhoneConfig::default()
        },
    )
    .unwrap();
    let before = std::fs::read(dir.path().join("boot.img")).unwrap();
    let signed: Vec<u8> = (0..image_len).map(|i| (i * 7 % 251) as u8).collect();
    let mut sent = signed.clone();
    let last = sent.len() - 1;
    sent[last] ^= 0xff; // changed after verification, in the last byte sent
    let transport =
        TcpTransport::connect(&phone.device_address(), std::time::Duration::from_secs(5)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    driver.identify().unwrap();
    let target = Target::Partition {
        name: "boot".into(),
    };
    let result = driver.write_image(&target, &Swapped { signed, sent }, &mut |_| {});
    assert!(
        matches!(result, Err(DeviceError::ImageChanged(_))),
        "{result:?}"
    );
    let unchanged = std::fs::read(dir.path().join("boot.img")).unwrap() == before;
    (phone.commands(), unchanged)
}

#[test]
fn a_whole_image_that_changed_is_never_flashed() {
    let (commands, unchanged) = attempt(16 * MIB as u32, 2 * MIB);
    assert!(commands.iter().any(|c| c.starts_with("download:")));
    assert!(
        !commands.iter().any(|c| c.starts_with("flash:")),
        "{commands:?}"
    );
    assert!(unchanged, "the partition must not change");
}

#[test]
fn the_last_piece_of_a_split_image_that_changed_is_never_committed() {
    let (commands, _) = attempt(MIB as u32, 3 * MIB);
    let downloads = commands
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    let flashes = commands.iter().filter(|c| c.starts_with("flash:")).count();
    assert!(downloads >= 3, "{commands:?}");
    assert_eq!(
        flashes,
        downloads - 1,
        "the final piece's flash is withheld: {commands:?}"
    );
}
