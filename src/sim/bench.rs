//! A virtual modem or hotspot that re-enumerates into EDL, as the real ones do.
//!
//! The AT side and the EDL side are separate simulators; this joins them: when the modem
//! receives its download-mode command it disappears, and the EDL device appears with the
//! same USB serial number and the download-mode USB IDs the quirks file expects, storing its
//! LUNs in the same folder.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::edl::{EdlConfig, EdlSim, RunningEdl};
use super::modem::{ModemConfig, ModemSim, RunningModem};

/// ZTE's download-mode USB IDs (Qualcomm EDL under ZTE's vendor ID).
pub const ZTE_EDL: (u16, u16) = (0x19d2, 0x0076);

/// A port path no real USB device has (`usb:sim-…`), the same for the same device folder.
fn virtual_port_path(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(dir.to_string_lossy().as_bytes());
    format!("usb:sim-{}", hex::encode(&digest[..4]))
}

/// A running virtual modem and, once switched, its EDL side.
pub struct VirtualModem {
    modem: RunningModem,
    edl: Arc<Mutex<Option<RunningEdl>>>,
    dir: PathBuf,
}

impl VirtualModem {
    /// Starts the modem in `dir`, announced on `bench_dir`. `edl` describes the device it
    /// becomes in download mode; its serial and USB IDs are set here to match the modem.
    pub fn start(
        mut modem: ModemConfig,
        mut edl: EdlConfig,
        dir: &Path,
        bench_dir: &Path,
    ) -> io::Result<Self> {
        edl.serial = modem.usb_serial.clone();
        (edl.vid, edl.pid) = ZTE_EDL;
        // A virtual USB port of its own, kept in every mode, as a real device keeps the
        // port it is plugged into.
        let port_path = modem
            .port_path
            .get_or_insert_with(|| virtual_port_path(dir))
            .clone();
        edl.port_path = Some(port_path);
        let slot: Arc<Mutex<Option<RunningEdl>>> = Arc::new(Mutex::new(None));
        let (edl_dir, edl_bench, edl_slot) = (
            dir.to_path_buf(),
            bench_dir.to_path_buf(),
            Arc::clone(&slot),
        );
        // Create the LUNs now, so they exist (with their identity data) before any switch.
        drop(EdlSim::new(dir, edl.clone(), None)?);
        let on_switch = Box::new(
            move || match EdlSim::start(&edl_dir, edl, Some(&edl_bench)) {
                Ok(running) => {
                    if let Ok(mut s) = edl_slot.lock() {
                        *s = Some(running);
                    }
                }
                Err(e) => tracing::error!("the virtual modem could not come back in EDL: {e}"),
            },
        );
        let modem = ModemSim::start(modem, Some(bench_dir), on_switch)?;
        Ok(VirtualModem {
            modem,
            edl: slot,
            dir: dir.to_path_buf(),
        })
    }

    /// The AT port's address.
    pub fn address(&self) -> &str {
        self.modem.address()
    }

    /// The AT commands received.
    pub fn at_commands(&self) -> Vec<String> {
        self.modem.commands()
    }

    /// The DIAG requests its DIAG port received, in hex.
    pub fn diag_requests(&self) -> Vec<String> {
        self.modem.diag_requests()
    }

    /// The injected faults that have fired so far: the AT side's, then the EDL side's.
    pub fn faults_fired(&self) -> Vec<String> {
        let mut fired = self.modem.faults_fired();
        if let Ok(edl) = self.edl.lock() {
            fired.extend(
                edl.as_ref()
                    .map(RunningEdl::faults_fired)
                    .unwrap_or_default(),
            );
        }
        fired
    }

    /// The EDL side's log, once switched.
    pub fn edl_commands(&self) -> Vec<String> {
        self.edl
            .lock()
            .ok()
            .and_then(|e| e.as_ref().map(RunningEdl::commands))
            .unwrap_or_default()
    }

    /// The raw file holding LUN `lun`.
    pub fn lun_path(&self, lun: usize) -> PathBuf {
        super::edl::lun_path(&self.dir, lun)
    }

    /// Stops both sides.
    pub fn stop(self) {
        self.modem.stop();
        if let Some(edl) = self.edl.lock().ok().and_then(|mut e| e.take()) {
            edl.stop();
        }
    }
}
