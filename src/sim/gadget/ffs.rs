//! FunctionFS: a USB interface whose endpoints are files served by this process.
//!
//! The function instance is mounted as a `functionfs` file system. Writing the interface's
//! descriptors and strings to `ep0` makes the endpoint files appear (`ep1`: bulk OUT, `ep2`:
//! bulk IN); `ep0` then delivers events (bind, enable, disable, unbind, setup requests),
//! which a thread answers for as long as the function exists.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::poll::{poll, PollFd, PollFlags};

use super::{at, GadgetError};

/// `FUNCTIONFS_DESCRIPTORS_MAGIC_V2`.
const DESCRIPTORS_MAGIC_V2: u32 = 3;
/// `FUNCTIONFS_STRINGS_MAGIC`.
const STRINGS_MAGIC: u32 = 2;
/// `FUNCTIONFS_HAS_FS_DESC | FUNCTIONFS_HAS_HS_DESC`: full- and high-speed descriptors.
const HAS_FS_HS: u32 = 1 | 2;
/// Bulk max packet size at full speed and at high speed.
const FULL_SPEED_PACKET: u16 = 64;
const HIGH_SPEED_PACKET: u16 = 512;
/// Size of `struct usb_functionfs_event`: an 8-byte setup packet, the type, padding.
const EVENT_LEN: usize = 12;
/// `FUNCTIONFS_SETUP`, the one event that needs an answer.
const EVENT_SETUP: u8 = 4;
/// How often the event thread looks at its stop flag while no event comes.
const EVENT_POLL_MS: i32 = 100;

/// The device side of the bulk OUT endpoint: each read returns one host transfer (or as
/// much of it as fits). A read blocks until the host sends, and fails with an I/O error
/// when the host deconfigures the device or the gadget is unbound.
#[derive(Debug)]
pub struct BulkOut(File);

/// The device side of the bulk IN endpoint: each write is one transfer to the host, and
/// blocks until the host reads it.
#[derive(Debug)]
pub struct BulkIn(File);

impl Read for BulkOut {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for BulkIn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A mounted, configured FunctionFS instance and its event thread; unmounted when dropped.
pub(super) struct FunctionFs {
    mount_point: PathBuf,
    stop: Arc<AtomicBool>,
    events: Option<JoinHandle<()>>,
}

impl FunctionFs {
    /// Mounts instance `instance` (the `ffs.<instance>` function must exist) and
    /// declares one interface `(class, subclass, protocol)` named `name` with two bulk
    /// endpoints.
    pub fn start(
        instance: &str,
        (class, subclass, protocol): (u8, u8, u8),
        name: &str,
    ) -> Result<Self, GadgetError> {
        let mount_point = std::env::temp_dir().join(format!("flashline-ffs-{instance}"));
        fs::create_dir_all(&mount_point).map_err(at(&mount_point))?;
        match mount(
            Some(instance),
            &mount_point,
            Some("functionfs"),
            MsFlags::empty(),
            None::<&str>,
        ) {
            Ok(()) => {}
            Err(Errno::ENODEV) => return Err(GadgetError::NoFunctionModule("ffs", "usb_f_fs")),
            Err(e) => return Err(at(&mount_point)(e.into())),
        }
        // From here on, dropping `ffs` unmounts again.
        let mut ffs = FunctionFs {
            mount_point,
            stop: Arc::new(AtomicBool::new(false)),
            events: None,
        };
        let ep0_path = ffs.mount_point.join("ep0");
        let mut ep0 = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&ep0_path)
            .map_err(at(&ep0_path))?;
        ep0.write_all(&descriptors(class, subclass, protocol))
            .and_then(|()| ep0.write_all(&strings(name)))
            .map_err(at(&ep0_path))?;
        let stop = Arc::clone(&ffs.stop);
        let thread = thread::Builder::new()
            .name(format!("ffs-ep0 {instance}"))
            .spawn(move || serve_events(ep0, &stop))
            .map_err(at(&ep0_path))?;
        ffs.events = Some(thread);
        Ok(ffs)
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// Opens the bulk endpoint files.
    pub fn endpoints(&self) -> Result<(BulkOut, BulkIn), GadgetError> {
        let open = |name: &str, write: bool| {
            let path = self.mount_point.join(name);
            OpenOptions::new()
                .read(!write)
                .write(write)
                .open(&path)
                .map_err(at(&path))
        };
        Ok((BulkOut(open("ep1", false)?), BulkIn(open("ep2", true)?)))
    }
}

impl Drop for FunctionFs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.events.take() {
            if thread.join().is_err() {
                tracing::error!("FunctionFS event thread panicked");
            }
        }
        unmount(&self.mount_point);
    }
}

/// Unmounts an instance and removes its mount point. Lazily: endpoint files someone still
/// holds keep the instance alive until they are closed.
pub(super) fn unmount(mount_point: &Path) {
    if let Err(e) = umount2(mount_point, MntFlags::MNT_DETACH) {
        tracing::warn!("unmounting {}: {e}", mount_point.display());
    }
    let _ = fs::remove_dir(mount_point);
}

/// Answers `ep0` events until `stop` is set. The interface defines no control requests
/// but CDC's SET_CONTROL_LINE_STATE, so every other setup request is refused with a stall,
/// as a real device does.
fn serve_events(mut ep0: File, stop: &AtomicBool) {
    let mut buf = [0u8; EVENT_LEN * 4];
    while !stop.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(ep0.as_raw_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, EVENT_POLL_MS) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("FunctionFS ep0 poll failed: {e}");
                return;
            }
        }
        let n = match ep0.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("FunctionFS ep0 read failed: {e}");
                return;
            }
        };
        for event in buf[..n].chunks_exact(EVENT_LEN) {
            let kind = event[8];
            tracing::debug!(kind = event_name(kind), "FunctionFS event");
            if kind == EVENT_SETUP {
                // CDC SET_CONTROL_LINE_STATE (0x21, 0x22), no data stage: accepted, as a
                // serial download port takes it (spd_dump sends it to Unisoc devices
                // before anything else). Reading the empty data stage acknowledges it.
                if event[0] == 0x21 && event[1] == 0x22 && event[6] == 0 && event[7] == 0 {
                    let _ = ep0.read(&mut []);
                    continue;
                }
                // A zero-length transfer against the request's direction stalls it.
                let device_to_host = event[0] & 0x80 != 0;
                let _ = if device_to_host {
                    ep0.read(&mut []).map(drop)
                } else {
                    ep0.write(&[]).map(drop)
                };
            }
        }
    }
}

fn event_name(kind: u8) -> &'static str {
    match kind {
        0 => "bind",
        1 => "unbind",
        2 => "enable",
        3 => "disable",
        4 => "setup",
        5 => "suspend",
        6 => "resume",
        _ => "unknown",
    }
}

/// The descriptor blob: one interface with a bulk OUT (`ep1`) and a bulk IN (`ep2`)
/// endpoint, at full and at high speed.
fn descriptors(class: u8, subclass: u8, protocol: u8) -> Vec<u8> {
    let set = |packet: u16| {
        let [lo, hi] = packet.to_le_bytes();
        let mut d = vec![9, 4, 0, 0, 2, class, subclass, protocol, 1];
        d.extend_from_slice(&[7, 5, 0x01, 0x02, lo, hi, 0]);
        d.extend_from_slice(&[7, 5, 0x82, 0x02, lo, hi, 0]);
        d
    };
    let mut body = Vec::new();
    for count in [3u32, 3] {
        body.extend_from_slice(&count.to_le_bytes());
    }
    body.extend(set(FULL_SPEED_PACKET));
    body.extend(set(HIGH_SPEED_PACKET));
    with_header(
        DESCRIPTORS_MAGIC_V2,
        HAS_FS_HS.to_le_bytes().as_slice(),
        &body,
    )
}

/// The strings blob: the interface name, in US English.
fn strings(name: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&1u32.to_le_bytes()); // strings per language
    body.extend_from_slice(&1u32.to_le_bytes()); // languages
    body.extend_from_slice(&0x0409u16.to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    with_header(STRINGS_MAGIC, &[], &body)
}

/// `magic`, total length, then `extra` and `body`.
fn with_header(magic: u32, extra: &[u8], body: &[u8]) -> Vec<u8> {
    let len = 8 + extra.len() + body.len();
    let mut blob = Vec::with_capacity(len);
    blob.extend_from_slice(&magic.to_le_bytes());
    blob.extend_from_slice(&(len as u32).to_le_bytes());
    blob.extend_from_slice(extra);
    blob.extend_from_slice(body);
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_blob_has_the_layout_functionfs_expects() {
        let blob = descriptors(0xff, 0x42, 0x03);
        assert_eq!(blob.len(), 20 + 2 * (9 + 7 + 7));
        assert_eq!(&blob[0..4], &3u32.to_le_bytes());
        assert_eq!(&blob[4..8], &(blob.len() as u32).to_le_bytes());
        assert_eq!(&blob[8..12], &3u32.to_le_bytes(), "full and high speed");
        assert_eq!(&blob[20..29], &[9, 4, 0, 0, 2, 0xff, 0x42, 0x03, 1]);
        // High-speed bulk endpoints carry 512-byte packets.
        assert_eq!(&blob[43 + 9..43 + 16], &[7, 5, 0x01, 0x02, 0x00, 0x02, 0]);
    }

    #[test]
    fn strings_blob_is_one_nul_terminated_english_string() {
        let blob = strings("fastboot");
        assert_eq!(&blob[0..4], &2u32.to_le_bytes());
        assert_eq!(&blob[4..8], &(blob.len() as u32).to_le_bytes());
        assert_eq!(&blob[16..18], &[0x09, 0x04]);
        assert_eq!(&blob[18..], b"fastboot\0");
    }
}
