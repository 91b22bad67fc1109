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

/// An image whose send reader (hashed) yields `sent` and whose plan reader (not hashed)
/// yields `planned`, while the signature covers `signed`: a file that changes under the
/// flasher.
struct Swapped {
    signed: Vec<u8>,
    sent: Vec<u8>,
    planned: Vec<u8>,
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
        Ok(Box::new(Cursor::new(self.planned.clone())))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        Ok(Box::new(Hashing {
            inner: Cursor::new(self.sent.clone()),
            hasher: Sha256::new(),
            expected: Sha256::digest(&self.signed).into(),
        }))
    }
}

/// Flashes a `image_len`-byte image into a phone with the given download limit; `sent`
/// and `planned` change the signed bytes as they make them. Returns the phone's commands,
/// the driver's result, and whether the partition is unchanged.
fn attempt(
    max_download_size: u32,
    image_len: usize,
    sent: impl Fn(&mut [u8]),
    planned: impl Fn(&mut [u8]),
) -> (Vec<String>, Result<(), DeviceError>, Vec<u8>, Vec<u8>) {
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
    let mut image = Swapped {
        sent: signed.clone(),
        planned: signed.clone(),
        signed,
    };
    sent(&mut image.sent);
    planned(&mut image.planned);
    let transport =
        TcpTransport::connect(&phone.device_address(), std::time::Duration::from_secs(5)).unwrap();
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    driver.identify().unwrap();
    let target = Target::Partition {
        name: "boot".into(),
    };
    let result = driver.write_image(&target, &image, &mut |_| {});
    let after = std::fs::read(dir.path().join("boot.img")).unwrap();
    (phone.commands(), result, before, after)
}

fn flip_last(bytes: &mut [u8]) {
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
}

#[test]
fn a_whole_image_that_changed_is_never_flashed() {
    let (commands, result, before, after) = attempt(16 * MIB as u32, 2 * MIB, flip_last, |_| {});
    assert!(
        matches!(result, Err(DeviceError::ImageChanged(_))),
        "{result:?}"
    );
    assert!(commands.iter().any(|c| c.starts_with("download:")));
    assert!(
        !commands.iter().any(|c| c.starts_with("flash:")),
        "{commands:?}"
    );
    assert!(before == after, "the partition must not change");
}

#[test]
fn a_split_image_that_differs_from_the_signed_one_sends_nothing() {
    // The whole image is checked before its first piece: a changed last byte stops it.
    let (commands, result, before, after) = attempt(MIB as u32, 3 * MIB, flip_last, |_| {});
    assert!(
        matches!(result, Err(DeviceError::ImageChanged(_))),
        "{result:?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.starts_with("download:") || c.starts_with("flash:")),
        "{commands:?}"
    );
    assert!(before == after, "the partition must not change");
}

#[test]
fn a_split_image_changed_between_its_check_and_its_sending_stops_at_the_changed_block() {
    // The file changes after the check, in its third MiB: the pieces before it were checked
    // block by block and are committed; no byte of the changed block reaches the phone.
    let changed_at = 2 * MIB + 10;
    let (commands, result, before, after) = attempt(
        MIB as u32,
        3 * MIB,
        |_| {},
        |p| {
            p[changed_at] ^= 0xff;
        },
    );
    let error = result.expect_err("a changed block is refused").to_string();
    assert!(error.contains("changed since it was verified"), "{error}");
    let flashes = commands.iter().filter(|c| c.starts_with("flash:")).count();
    let downloads = commands
        .iter()
        .filter(|c| c.starts_with("download:"))
        .count();
    assert!(flashes >= 1, "{commands:?}");
    assert!(flashes < downloads || downloads < 4, "{commands:?}");
    assert!(
        after[2 * MIB..3 * MIB] == before[2 * MIB..3 * MIB],
        "the changed block's region is untouched"
    );
}
