//! What the three download-mode simulators (EDL, ZXIC, Unisoc) share around their devices:
//! the [`Port`] a prepared device serves on (a pseudo-terminal announced on the bench, or a
//! USB gadget's bulk endpoints), and the [`Running`] handle of a device serving on a
//! background thread. Each simulator keeps only what is its own: its configuration, its
//! storage and the stages it runs on the line.

use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

use super::edl::pty::Pty;
use super::edl::Line;
use super::fault::{FaultPlan, Injector};
use crate::device::bench::{self, Announcement, BenchEntry};

/// Locks `mutex`, also after a thread panicked holding it: the simulators' state stays
/// readable for the test that asks what happened.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a download-mode device shows itself on USB: on the bench when it serves on a
/// pseudo-terminal, and as a gadget when it serves on USB.
pub(super) struct UsbIdentity<'a> {
    /// USB vendor ID.
    pub(super) vid: u16,
    /// USB product ID.
    pub(super) pid: u16,
    /// USB serial number string ("" for none).
    pub(super) serial: &'a str,
    /// USB product string.
    pub(super) product: &'a str,
}

/// Opens a pseudo-terminal for a device: the line of every simulator's `new`.
pub(super) fn pty_line(stop: Arc<AtomicBool>) -> io::Result<Box<dyn Line>> {
    Ok(Box::new(Pty::open(stop)?))
}

/// Plugs in a USB gadget with one bulk interface and returns the function that makes it a
/// device's line (Linux; needs configfs, libcomposite, usb_f_fs and a USB device
/// controller). `role` and `name` name the gadget (`flashline-<role>-<name>`); `name` is
/// the device's serial number, which it has even when it enumerates without one.
#[cfg(target_os = "linux")]
pub(super) fn gadget_line(
    role: &str,
    name: &str,
    manufacturer: &str,
    interface: (u8, u8, u8),
    usb: UsbIdentity<'_>,
) -> impl FnOnce(Arc<AtomicBool>) -> io::Result<Box<dyn Line>> {
    use super::edl::usb::GadgetLine;
    use super::gadget::{gadget_name, Function, GadgetSpec};

    let spec = GadgetSpec {
        name: gadget_name(role, name),
        vid: usb.vid,
        pid: usb.pid,
        manufacturer: manufacturer.into(),
        product: usb.product.to_string(),
        serial: usb.serial.to_string(),
        function: Function::Bulk {
            class: interface.0,
            subclass: interface.1,
            protocol: interface.2,
        },
    };
    move |stop| Ok(Box::new(GadgetLine::plug_in(&spec, stop)?) as Box<dyn Line>)
}

/// Where a prepared download-mode device serves: its line and the stop flag the line
/// watches, its bench announcement, and what its [`Running`] handle reads once it serves
/// (its folder, its event log, the faults that fired).
pub(super) struct Port {
    /// The device's end of its cable.
    pub(super) line: Box<dyn Line>,
    /// Held while the device serves; dropping it withdraws the device from the bench.
    pub(super) announcement: Option<Announcement>,
    stop: Arc<AtomicBool>,
    /// The folder holding the device's storage.
    pub(super) dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    faults_fired: Arc<Mutex<Vec<String>>>,
}

impl Port {
    /// The line `open_line` makes for a device whose storage is in `dir`; the line gets
    /// the stop flag it must watch (see [`Line`]).
    pub(super) fn open(
        dir: &Path,
        open_line: impl FnOnce(Arc<AtomicBool>) -> io::Result<Box<dyn Line>>,
    ) -> io::Result<Port> {
        let stop = Arc::new(AtomicBool::new(false));
        let line = open_line(Arc::clone(&stop))?;
        Ok(Port {
            line,
            announcement: None,
            stop,
            dir: dir.to_path_buf(),
            log: Arc::default(),
            faults_fired: Arc::default(),
        })
    }

    /// Where a host opens the device: `serial:/dev/pts/N` for a pseudo-terminal.
    pub(super) fn address(&self) -> &str {
        self.line.address()
    }

    /// The event log the device records into.
    pub(super) fn log(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(&self.log)
    }

    /// Carries out `plan`, recording the faults that fire where the handle reads them.
    pub(super) fn injector(&self, plan: &FaultPlan) -> Mutex<Injector> {
        Mutex::new(Injector::new(plan, Arc::clone(&self.faults_fired)))
    }

    /// With `bench_dir`, announces the device there with its USB identity, as long as the
    /// port (or the serving thread that takes the announcement) lives.
    pub(super) fn announce(
        &mut self,
        bench_dir: Option<&Path>,
        usb: UsbIdentity<'_>,
        port_path: Option<String>,
    ) -> io::Result<()> {
        if let Some(bench_dir) = bench_dir {
            let entry = BenchEntry {
                address: self.address().to_string(),
                vid: usb.vid,
                pid: usb.pid,
                serial: usb.serial.to_string(),
                product: usb.product.to_string(),
                interface: None,
                port_path,
            };
            self.announcement = Some(bench::announce(bench_dir, &entry)?);
        }
        Ok(())
    }
}

/// A download-mode device serving on a background thread; `Sim` is the simulator it runs
/// ([`RunningEdl`](super::edl::RunningEdl) and its siblings name them). Dropping it stops
/// the device too.
pub struct Running<Sim> {
    /// Names the thread (`edl-sim …`) and the log line of a panic.
    role: &'static str,
    address: String,
    dir: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    faults_fired: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    sim: PhantomData<fn() -> Sim>,
}

impl<Sim> Running<Sim> {
    /// The handle of the device serving on `port`; it serves once [`Running::spawn`] starts
    /// it.
    pub(super) fn watching(role: &'static str, port: &Port) -> Self {
        Running {
            role,
            address: port.address().to_string(),
            dir: port.dir.clone(),
            log: Arc::clone(&port.log),
            faults_fired: Arc::clone(&port.faults_fired),
            stop: Arc::clone(&port.stop),
            thread: None,
            sim: PhantomData,
        }
    }

    /// Runs `serve_forever` on a thread named `<role>-sim <address>`, until the handle
    /// stops it.
    pub(super) fn spawn(
        mut self,
        serve_forever: impl FnOnce() + Send + 'static,
    ) -> io::Result<Self> {
        let thread = thread::Builder::new()
            .name(format!("{}-sim {}", self.role, self.address))
            .spawn(serve_forever)?;
        self.thread = Some(thread);
        Ok(self)
    }

    /// Where a host opens the device: `serial:/dev/pts/N` for a pseudo-terminal.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The folder holding the device's storage.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything the device saw and did, oldest first. EDL: Sahara events (`sahara:hello`,
    /// `sahara:hello-resp version=2 mode=0`, `sahara:read-data image=13 offset=0 len=52`,
    /// `sahara:end-of-image image=13 status=0`, `sahara:done`, …) and Firehose commands and
    /// outcomes (`firehose:program lun=0 start=34 sectors=8`, `firehose:nak <reason>`, …).
    /// ZXIC: `bootrom:sync`, `bootrom:load 0x00082000+8192`,
    /// `tboot:compat_write imagefs 00000000 200000`, `tboot:reply FAIL …`, …. Unisoc:
    /// `brom:version`, `brom:loader addr=0x5500 size=…`, `fdl2:write boot 4096 bytes`, ….
    pub fn commands(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    /// The injected faults that have fired so far, oldest first, in their textual form
    /// (`power-loss@bytes=4096`, `fail@program#1`, …).
    pub fn faults_fired(&self) -> Vec<String> {
        lock(&self.faults_fired).clone()
    }

    /// Stops serving and waits for the thread; the device's storage stays in its folder.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        if thread.join().is_err() {
            tracing::error!("{} sim thread panicked", self.role);
        }
    }
}

impl<Sim> Drop for Running<Sim> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
