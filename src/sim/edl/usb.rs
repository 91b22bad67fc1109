//! The virtual EDL device on a USB gadget: a FunctionFS interface FF/FF/FF with one bulk OUT
//! and one bulk IN endpoint, under the device's vendor/product ID and serial number, as a
//! Qualcomm boot ROM enumerates (05c6:9008 "QUSB__BULK").
//!
//! FunctionFS endpoint files block without a timeout, so each direction has a thread and
//! the [`Line`] waits on channels in short slices (seeing the stop flag):
//!
//! * Host to device: the reader thread reads one transfer at a time and queues it; zero
//!   length packets carry nothing and are dropped.
//! * Device to host: each `write` is one IN transfer, followed by a zero-length packet when
//!   its length is a whole number of packets, so a host reading into a larger buffer (qdl
//!   reads 4 KiB for every Sahara packet and Firehose document) sees where it ends. A
//!   write returns once the controller has taken the transfer (a short one may only have
//!   gone into the endpoint's FIFO); one that times out stays queued, and the next write
//!   waits for it first.
//! * The boot ROM offers HELLO again and again until a host answers, which suits a serial
//!   line (opening a tty flushes what was sent before). Over USB the first HELLO waits in
//!   the endpoint for whoever comes, so writing the very same bytes again before the host
//!   has sent anything is the same offer and is not queued twice: a host that comes late
//!   reads exactly one HELLO, as from a real boot ROM.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::sim::download_mode::gadget_line;
use crate::sim::gadget::{BulkIn, BulkOut, Gadget, GadgetSpec};
use crate::transport::{Transport, TransportError};

use super::{EdlConfig, EdlSim, Line, SLICE};

/// Interface class, subclass and protocol of the EDL interface (the qdl rule's oldest).
const EDL_INTERFACE: (u8, u8, u8) = (0xff, 0xff, 0xff);
/// Largest host transfer read at once; longer ones arrive in several pieces.
const READ_LEN: usize = 64 * 1024;
/// Host transfers queued before the reader thread waits for the device to take them.
const QUEUED_READS: usize = 4;
/// How long the reader thread waits before trying again while the host has not
/// configured the device (reads fail then).
const NOT_CONFIGURED_RETRY: Duration = Duration::from_millis(50);
/// How long a rebooting device stays off the bus.
const OFF_BUS: Duration = Duration::from_millis(200);
/// How long the writer thread may take to give up a transfer once the device is unbound.
const CANCEL_WAIT: Duration = Duration::from_secs(2);

impl EdlSim {
    /// Prepares the LUN files in `dir` and plugs the device in as a USB gadget with the
    /// configuration's IDs, product string and serial number (Linux; needs configfs,
    /// libcomposite, usb_f_fs and a USB device controller). Hosts find it on the bus, so
    /// nothing is announced on the bench.
    pub fn on_usb_gadget(dir: &Path, cfg: EdlConfig) -> io::Result<EdlSim> {
        let manufacturer = "Qualcomm CDMA Technologies MSM";
        let line = gadget_line("edl", &cfg.serial, manufacturer, EDL_INTERFACE, cfg.usb());
        EdlSim::on_line(dir, cfg, line)
    }
}

/// The gadget and the two endpoint threads.
pub(crate) struct GadgetLine {
    address: String,
    stop: Arc<AtomicBool>,
    from_host: Receiver<Vec<u8>>,
    /// The host transfer being read, and how much of it is consumed.
    current: Vec<u8>,
    taken: usize,
    to_host: SyncSender<Vec<u8>>,
    delivered: Receiver<io::Result<()>>,
    /// A transfer was handed to the writer thread and the controller has not taken it yet.
    pending: bool,
    /// The last transfer sent, while the host has sent nothing since.
    unanswered: Option<Vec<u8>>,
    /// Dropped last: unbinding ends the threads' blocked reads and writes.
    gadget: Gadget,
}

impl GadgetLine {
    /// Plugs the gadget `spec` in; `stop` ends every wait once set (see [`Line`]).
    pub(crate) fn plug_in(spec: &GadgetSpec, stop: Arc<AtomicBool>) -> io::Result<GadgetLine> {
        let gadget = Gadget::create(spec)?;
        let (out, to_host_ep) = gadget.bulk_endpoints()?;
        let udc_file = gadget.path().join("UDC");
        let (queue, from_host) = mpsc::sync_channel(QUEUED_READS);
        let reader_stop = Arc::clone(&stop);
        thread::Builder::new()
            .name(format!("edl-usb-out {}", spec.name))
            .spawn(move || read_transfers(out, &queue, &reader_stop))?;
        let (to_host, outgoing) = mpsc::sync_channel::<Vec<u8>>(1);
        let (done, delivered) = mpsc::sync_channel(1);
        let writer_stop = Arc::clone(&stop);
        thread::Builder::new()
            .name(format!("edl-usb-in {}", spec.name))
            .spawn(move || {
                write_transfers(to_host_ep, &outgoing, &done, &udc_file, &writer_stop)
            })?;
        Ok(GadgetLine {
            address: format!("usb-gadget:{}", spec.name),
            stop,
            from_host,
            current: Vec::new(),
            taken: 0,
            to_host,
            delivered,
            pending: false,
            unanswered: None,
            gadget,
        })
    }

    /// Waits until the controller took the pending transfer, if any.
    fn settle(&mut self, deadline: Instant, timeout: Duration) -> Result<(), TransportError> {
        if !self.pending {
            return Ok(());
        }
        let result = self.wait(&self.delivered, deadline, timeout)?;
        self.pending = false;
        result.map_err(TransportError::Io)
    }

    /// The next message on `channel`, waiting in slices until `deadline`.
    fn wait<T>(
        &self,
        channel: &Receiver<T>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<T, TransportError> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Err(TransportError::Disconnected);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(TransportError::Timeout(timeout));
            }
            match channel.recv_timeout(left.min(SLICE)) {
                Ok(value) => return Ok(value),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(TransportError::Disconnected),
            }
        }
    }
}

impl Transport for GadgetLine {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        if self.unanswered.as_deref() == Some(data) {
            // The same offer is still there for the host to take.
            return self.settle(deadline, timeout);
        }
        self.settle(deadline, timeout)?;
        tracing::trace!(len = data.len(), "edl usb: transfer to the host");
        self.to_host
            .send(data.to_vec())
            .map_err(|_| TransportError::Disconnected)?;
        self.pending = true;
        self.unanswered = Some(data.to_vec());
        self.settle(deadline, timeout)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        while self.taken == self.current.len() {
            self.current = self.wait(&self.from_host, deadline, timeout)?;
            self.taken = 0;
            self.unanswered = None;
        }
        let n = (self.current.len() - self.taken).min(buf.len());
        buf[..n].copy_from_slice(&self.current[self.taken..self.taken + n]);
        self.taken += n;
        Ok(n)
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl Line for GadgetLine {
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }

    fn discard_input(&mut self) {
        self.current.clear();
        self.taken = 0;
        while self.from_host.try_recv().is_ok() {}
    }

    fn skip_rest_of_transfer(&mut self) -> bool {
        self.taken = self.current.len();
        true
    }

    /// Leaves the bus and comes back: a host still holding the old device sees it vanish,
    /// and the next one reads this boot's first HELLO, not what the last boot left queued.
    fn reboot(&mut self) {
        if let Err(e) = self.gadget.unbind() {
            tracing::warn!("edl sim: cannot leave the bus: {e}");
        }
        // A transfer the controller never took fails with its endpoint.
        if std::mem::take(&mut self.pending) && self.delivered.recv_timeout(CANCEL_WAIT).is_err() {
            tracing::warn!("edl sim: an unsent transfer did not fail on unbind");
        }
        self.unanswered = None;
        self.pause(OFF_BUS);
        self.discard_input();
        if let Err(e) = self.gadget.bind() {
            tracing::warn!("edl sim: cannot come back on the bus: {e}");
        }
    }
}

/// Reads host transfers until the device side is gone or the simulator stops.
fn read_transfers(mut out: BulkOut, queue: &SyncSender<Vec<u8>>, stop: &AtomicBool) {
    let mut buf = vec![0u8; READ_LEN];
    while !stop.load(Ordering::SeqCst) {
        match out.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => {
                tracing::trace!(len = n, "edl usb: transfer from the host");
                if queue.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("edl sim: USB read failed (host not configured?): {e}");
                thread::sleep(NOT_CONFIGURED_RETRY);
            }
        }
    }
}

/// Sends each device transfer (plus its ZLP) once the host has configured the device, and
/// reports when the controller has taken it.
fn write_transfers(
    mut to_host: BulkIn,
    outgoing: &Receiver<Vec<u8>>,
    done: &SyncSender<io::Result<()>>,
    udc_file: &Path,
    stop: &AtomicBool,
) {
    while let Ok(transfer) = outgoing.recv() {
        while udc_attribute(udc_file, "state").as_deref() != Some("configured") {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(SLICE);
        }
        let mut result = to_host.write(&transfer).map(drop);
        if result.is_ok() && transfer.len() % packet_size(udc_file) == 0 {
            result = to_host.write(&[]).map(drop);
        }
        tracing::trace!(len = transfer.len(), ?result, "edl usb: transfer done");
        if done.send(result).is_err() {
            return;
        }
    }
}

/// The bulk packet size at the speed the host enumerated the gadget: 64 at full speed,
/// 512 at high speed (the interface declares no super-speed endpoints).
fn packet_size(udc_file: &Path) -> usize {
    match udc_attribute(udc_file, "current_speed").as_deref() {
        Some("full-speed") => 64,
        _ => 512,
    }
}

/// An attribute of the USB device controller the gadget is bound to (its name is in the
/// gadget's `UDC` file), e.g. `state` or `current_speed`.
fn udc_attribute(udc_file: &Path, attribute: &str) -> Option<String> {
    let udc = std::fs::read_to_string(udc_file).ok()?;
    let path = Path::new("/sys/class/udc").join(udc.trim()).join(attribute);
    std::fs::read_to_string(path)
        .ok()
        .map(|value| value.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_size_is_high_speed_unless_the_controller_says_otherwise() {
        assert_eq!(packet_size(Path::new("/nonexistent/UDC")), 512);
    }
}
