//! A virtual USB modem (dongle) or mobile hotspot answering AT commands on a
//! pseudo-terminal, the way a real one answers on its USB AT port.
//!
//! The host side opens the pty's slave path (`/dev/pts/N`) like any serial port; the
//! simulator serves the master side on a background thread. Since no operating system
//! lists ptys, the modem announces itself on the virtual bench with the USB identity a real
//! one would enumerate with. Its download command (`AT+ZCDRUN=E`, factory mode, as
//! reported for real ZTE devices) makes it behave like a modem rebooting: it answers `OK`,
//! its announcement and its tty disappear, and then, by its [`DownloadRoute`], either a
//! DIAG port appears (19d2:0016, interface 0) whose `DIAG_DLOAD_F` or `4B 65 01 00`
//! request ends in EDL, or it goes straight to EDL. The caller's `on_switch` brings up
//! whatever the modem "reboots" into.
//!
//! Injected faults ([`ModemConfig::faults`]) are matched against each command line as
//! received, without regard to case (`AT+CGMR` matches `at+cgmr`). The modem has no data
//! phase, so its payload bytes are those of the lines it receives: each line's bytes (LF
//! and overflow beyond [`MAX_COMMAND_LINE`] not counted) plus its CR, counted when the CR
//! arrives.
//!
//! * fail: `ERROR` (in the `AT+CMEE` form), nothing executed; the download command then
//!   does not switch.
//! * stall: that command is echoed but never answered; the next ones are.
//! * garbage: 64 bytes instead of the answer, non-text bytes ending in CR LF, so the host
//!   reads one broken line and then no final result; nothing executed.
//! * battery drop: a hotspot's `+CBC` reports the new charge.
//! * reenumerate: no answer; the modem vanishes and comes back in download mode (EDL),
//!   without a DIAG step whatever its route.
//! * disconnect and power loss do not apply (no data phase, no storage written over AT):
//!   give them to the EDL side.

mod diag;
#[cfg(target_os = "linux")]
mod usb;

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serialport::{SerialPort, TTYPort};

use super::fault::{self, Fault, FaultPlan, FaultPlanError, Injector, Match, Reaction};
use crate::device::bench::{self, Announcement, BenchEntry};
pub use diag::{DiagLine, OpenDiag};
#[cfg(target_os = "linux")]
pub use usb::UsbModem;

/// Longest command line accepted from the host; longer lines are discarded and refused
/// with an error, as real modems do with an overflowing command buffer.
pub const MAX_COMMAND_LINE: usize = 512;
/// How often the serving thread looks at the stop flag, and how long one answer may wait
/// for room in the pty buffer.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Time between answering the download command and vanishing: long enough for the host
/// to read the `OK` that a real modem usually manages to send before it reboots.
const SWITCH_DELAY: Duration = Duration::from_millis(100);

/// What the device is; decides how it answers `AT+CBC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemKind {
    /// A bus-powered USB stick: no battery (`+CBC: 2,0`).
    Dongle,
    /// A battery-powered mobile hotspot.
    Hotspot,
}

/// Where the download command leads, as real ZTE devices are reported to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownloadRoute {
    /// Factory mode: the modem comes back with a DIAG port, where a download request sends
    /// it into EDL.
    Diag,
    /// The command reboots the modem straight into EDL.
    Direct,
}

/// USB IDs of the factory composition with the DIAG port (ZTE).
pub const ZTE_FACTORY: (u16, u16) = (0x19d2, 0x0016);
/// The USB interface of the factory composition's DIAG port.
pub const DIAG_INTERFACE: u8 = 0;

/// What the virtual modem is and says.
///
/// Later behaviours are added as fields here, so that every constructor keeps working
/// through `..ModemConfig::dongle()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModemConfig {
    /// Dongle or hotspot.
    pub kind: ModemKind,
    /// `AT+CGMI`.
    pub manufacturer: String,
    /// `AT+CGMM`; also the USB product string on the bench.
    pub model: String,
    /// `AT+CGMR`.
    pub revision: String,
    /// `AT+CGSN`: 15 digits.
    pub imei: String,
    /// USB serial number; the device the modem switches into keeps it.
    pub usb_serial: String,
    /// USB vendor ID of the modem composition.
    pub vid: u16,
    /// USB product ID of the modem composition.
    pub pid: u16,
    /// Battery charge reported by a hotspot (0–100); a dongle has no battery.
    pub battery_percent: u8,
    /// A hotspot on its charger (`+CBC: 1,…` instead of `+CBC: 0,…`).
    pub charging: bool,
    /// The command that reboots the modem into its download mode.
    pub download_command: String,
    /// Echo command lines back, as modems do after power-on until `ATE0`.
    pub echo: bool,
    /// Interleave an unsolicited `+CREG: 1` into every answer with information lines, as a
    /// modem does when its network registration changes while it answers.
    pub unsolicited: bool,
    /// How the modem misbehaves on purpose (see the module documentation); none by
    /// default.
    pub faults: FaultPlan,
    /// Where the download command leads.
    pub route: DownloadRoute,
    /// Where the modem is plugged in, announced with each of its ports and kept by the
    /// device it becomes, as a USB port path is.
    pub port_path: Option<String>,
}

impl ModemConfig {
    /// A ZTE MF833V-style USB dongle.
    pub fn dongle() -> Self {
        ModemConfig {
            kind: ModemKind::Dongle,
            manufacturer: "ZTE CORPORATION".into(),
            model: "MF833V".into(),
            revision: "BD_MF833VV1.0.0B08".into(),
            imei: "868611040000015".into(),
            usb_serial: "FLMODEM0001".into(),
            vid: 0x19d2,
            pid: 0x1403,
            battery_percent: 0,
            charging: false,
            download_command: "AT+ZCDRUN=E".into(),
            echo: true,
            unsolicited: false,
            faults: FaultPlan::none(),
            route: DownloadRoute::Diag,
            port_path: None,
        }
    }

    /// A ZTE MU300-style mobile hotspot at 80 %, not charging, that goes straight to EDL.
    pub fn hotspot() -> Self {
        ModemConfig {
            kind: ModemKind::Hotspot,
            model: "MU300".into(),
            battery_percent: 80,
            route: DownloadRoute::Direct,
            ..ModemConfig::dongle()
        }
    }

    fn check(&self) -> Result<(), ModemConfigError> {
        if self.imei.len() != 15 || !self.imei.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ModemConfigError::BadImei(self.imei.clone()));
        }
        if self.battery_percent > 100 {
            return Err(ModemConfigError::BadBattery(self.battery_percent));
        }
        let text_fields = [
            ("manufacturer", &self.manufacturer),
            ("model", &self.model),
            ("revision", &self.revision),
            ("usb_serial", &self.usb_serial),
            ("download_command", &self.download_command),
        ];
        for (field, value) in text_fields {
            if value.is_empty() || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                return Err(ModemConfigError::BadText {
                    field,
                    value: value.clone(),
                });
            }
        }
        if !starts_with_at(&self.download_command) {
            return Err(ModemConfigError::BadDownloadCommand(
                self.download_command.clone(),
            ));
        }
        let kind = self.kind;
        self.faults.check("the modem", |fault| match fault {
            Fault::Disconnect { .. } | Fault::PowerLoss { .. } => {
                Some("has no data phase on its AT port; give this fault to its EDL side")
            }
            Fault::Drop { .. } => Some("has a serial line, no link to drop; use stall"),
            Fault::Corrupt { .. } => Some("checks no payload checksum, so a flipped byte would pass unseen; corrupt@ is the ZXIC simulator's"),
            Fault::BatteryDrop { .. } if kind == ModemKind::Dongle => {
                Some("is a dongle without a battery")
            }
            _ => None,
        })?;
        Ok(())
    }
}

impl Default for ModemConfig {
    fn default() -> Self {
        ModemConfig::dongle()
    }
}

/// Why a modem could not be set up. Returned inside an [`io::Error`] of kind
/// `InvalidInput`; downcast with `get_ref`.
#[derive(Debug, thiserror::Error)]
pub enum ModemConfigError {
    /// Not 15 decimal digits.
    #[error("IMEI {0:?} is not 15 digits")]
    BadImei(String),
    /// A battery charge above 100 %.
    #[error("battery charge {0} % is over 100 %")]
    BadBattery(u8),
    /// Empty, or not printable ASCII (it would break the line framing).
    #[error("{field} {value:?} must be non-empty printable ASCII")]
    BadText {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The download command is not an AT command.
    #[error("download command {0:?} does not start with AT")]
    BadDownloadCommand(String),
    /// The fault plan cannot be carried out by this modem.
    #[error(transparent)]
    Fault(#[from] FaultPlanError),
}

impl From<ModemConfigError> for io::Error {
    fn from(e: ModemConfigError) -> Self {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The DIAG port of a modem on the virtual bench: a new pseudo-terminal, announced in
/// `bench_dir` with the factory composition's IDs, the DIAG interface and the modem's port
/// path.
fn diag_pty(cfg: &ModemConfig, bench_dir: &Path) -> OpenDiag {
    let entry = BenchEntry {
        address: String::new(),
        vid: ZTE_FACTORY.0,
        pid: ZTE_FACTORY.1,
        serial: cfg.usb_serial.clone(),
        product: cfg.model.clone(),
        interface: Some(DIAG_INTERFACE),
        port_path: cfg.port_path.clone(),
    };
    let bench_dir = bench_dir.to_path_buf();
    Box::new(move || {
        let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
        let path = slave
            .name()
            .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
        let entry = BenchEntry {
            address: format!("serial:{path}"),
            ..entry
        };
        let announcement = bench::announce(&bench_dir, &entry)?;
        Ok(DiagLine {
            port: master,
            keep: Box::new((slave, announcement)),
        })
    })
}

fn starts_with_at(line: &str) -> bool {
    line.get(..2)
        .is_some_and(|at| at.eq_ignore_ascii_case("AT"))
}

/// How an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Error,
}

/// The answer to one command line.
#[derive(Debug)]
struct Reply {
    info: Vec<String>,
    outcome: Outcome,
    /// The command was the download command: vanish after answering.
    switch: bool,
}

impl Reply {
    fn ok(info: Vec<String>) -> Self {
        Reply {
            info,
            outcome: Outcome::Ok,
            switch: false,
        }
    }

    fn error() -> Self {
        Reply {
            info: Vec::new(),
            outcome: Outcome::Error,
            switch: false,
        }
    }
}

/// The modem's command interpreter: state and answers, no I/O.
#[derive(Debug)]
struct Modem {
    cfg: ModemConfig,
    echo: bool,
    /// The charge a hotspot reports (the configured one until an injected drop).
    battery_percent: u8,
    /// `AT+CMEE` mode: 0 plain `ERROR`, 1 numeric, 2 verbose `+CME ERROR`.
    cmee: u8,
}

impl Modem {
    fn new(cfg: ModemConfig) -> Self {
        Modem {
            echo: cfg.echo,
            battery_percent: cfg.battery_percent,
            cmee: 0,
            cfg,
        }
    }

    /// Answers one command line (`AT…`, without the CR). Commands are case-insensitive.
    fn handle(&mut self, line: &str) -> Reply {
        if line.eq_ignore_ascii_case(&self.cfg.download_command) {
            // The answer ZTE modems are reported to give to AT+ZCDRUN=E.
            return Reply {
                switch: true,
                ..Reply::ok(vec!["Enter download mode result(0:FAIL 1:SUCCESS):1".into()])
            };
        }
        let cfg = &self.cfg;
        let body = line[2..].to_ascii_uppercase();
        match body.as_str() {
            "" => Reply::ok(Vec::new()),
            "E" | "E0" | "E1" => {
                self.echo = body == "E1";
                Reply::ok(Vec::new())
            }
            "I" | "I0" => Reply::ok(vec![
                format!("Manufacturer: {}", cfg.manufacturer),
                format!("Model: {}", cfg.model),
                format!("Revision: {}", cfg.revision),
                format!("IMEI: {}", cfg.imei),
            ]),
            "+CGMI" => Reply::ok(vec![cfg.manufacturer.clone()]),
            "+CGMM" => Reply::ok(vec![cfg.model.clone()]),
            "+CGMR" => Reply::ok(vec![cfg.revision.clone()]),
            "+CGSN" | "+CGSN=0" => Reply::ok(vec![cfg.imei.clone()]),
            "+CGSN=1" => Reply::ok(vec![format!("+CGSN: \"{}\"", cfg.imei)]),
            "+CBC" => Reply::ok(vec![match cfg.kind {
                ModemKind::Dongle => "+CBC: 2,0".to_string(),
                ModemKind::Hotspot => {
                    format!("+CBC: {},{}", u8::from(cfg.charging), self.battery_percent)
                }
            }]),
            "+CMEE?" => Reply::ok(vec![format!("+CMEE: {}", self.cmee)]),
            "+CMEE=0" | "+CMEE=1" | "+CMEE=2" => {
                self.cmee = body.as_bytes()[6] - b'0';
                Reply::ok(Vec::new())
            }
            _ => Reply::error(),
        }
    }

    /// The bytes a modem in verbose mode sends for `reply`.
    fn encode(&self, reply: &Reply) -> Vec<u8> {
        let mut out = String::new();
        if !reply.info.is_empty() {
            out.push_str("\r\n");
            for (i, line) in reply.info.iter().enumerate() {
                out.push_str(line);
                out.push_str("\r\n");
                if i == 0 && self.cfg.unsolicited {
                    out.push_str("\r\n+CREG: 1\r\n");
                }
            }
        }
        out.push_str(match (reply.outcome, self.cmee) {
            (Outcome::Ok, _) => "\r\nOK\r\n",
            (Outcome::Error, 0) => "\r\nERROR\r\n",
            // 27.007 error 100: "unknown".
            (Outcome::Error, 1) => "\r\n+CME ERROR: 100\r\n",
            (Outcome::Error, _) => "\r\n+CME ERROR: unknown\r\n",
        });
        out.into_bytes()
    }
}

/// State shared between the serving thread and its [`RunningModem`] handle.
#[derive(Default)]
struct Shared {
    commands: Mutex<Vec<String>>,
    diag_requests: Mutex<Vec<String>>,
    faults_fired: Arc<Mutex<Vec<String>>>,
    stopping: AtomicBool,
    switched: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Why the serving loop ended.
enum Ended {
    Stopped,
    Switched,
}

/// A virtual modem on its pseudo-terminal (or on a USB gadget's serial line).
pub struct ModemSim {
    master: TTYPort,
    /// A pseudo-terminal's slave, held open so the master never sees `EIO` while no host
    /// has the port open: the host can close and reopen it, as with a real modem's tty.
    slave: Option<TTYPort>,
    announcement: Option<Announcement>,
    modem: Modem,
    faults: Injector,
    shared: Arc<Shared>,
    open_diag: Option<OpenDiag>,
    /// An injected re-enumeration: the modem comes back in EDL whatever its route.
    straight_to_edl: bool,
}

impl ModemSim {
    /// Creates the pty (in raw mode: no echo or line editing by the kernel, so the host
    /// sees exactly the modem's bytes), announces the modem in `bench_dir` when given, and
    /// serves AT commands on a background thread until stopped or switched. `on_switch`
    /// runs on that thread once the download command has made the modem vanish.
    pub fn start(
        cfg: ModemConfig,
        bench_dir: Option<&Path>,
        on_switch: Box<dyn FnOnce() + Send>,
    ) -> io::Result<RunningModem> {
        cfg.check()?;
        let (master, slave) = TTYPort::pair().map_err(io::Error::from)?;
        let tty_path = slave
            .name()
            .ok_or_else(|| io::Error::other("the pseudo-terminal has no path"))?;
        let address = format!("serial:{tty_path}");
        let announcement = bench_dir
            .map(|dir| {
                let entry = BenchEntry {
                    address: address.clone(),
                    vid: cfg.vid,
                    pid: cfg.pid,
                    serial: cfg.usb_serial.clone(),
                    product: cfg.model.clone(),
                    interface: None,
                    port_path: cfg.port_path.clone(),
                };
                bench::announce(dir, &entry)
            })
            .transpose()?;
        let open_diag = bench_dir.map(|dir| diag_pty(&cfg, dir));
        ModemSim::spawn(
            cfg,
            master,
            Some(slave),
            announcement,
            tty_path,
            open_diag,
            on_switch,
        )
    }

    /// Serves AT commands on `tty`, the device side of a USB gadget's serial function
    /// (`/dev/ttyGS<N>`), whose host side (`/dev/ttyACM<N>`) the host finds by its USB
    /// identity; otherwise as [`ModemSim::start`].
    pub fn start_on_tty(
        cfg: ModemConfig,
        tty: &str,
        open_diag: OpenDiag,
        on_switch: Box<dyn FnOnce() + Send>,
    ) -> io::Result<RunningModem> {
        cfg.check()?;
        // Raw 8N1 without flow control, as the host's cdc-acm side will be.
        let port = serialport::new(tty, 115_200).open_native().map_err(|e| {
            io::Error::new(io::Error::from(e.clone()).kind(), format!("{tty}: {e}"))
        })?;
        ModemSim::spawn(
            cfg,
            port,
            None,
            None,
            tty.to_string(),
            Some(open_diag),
            on_switch,
        )
    }

    fn spawn(
        cfg: ModemConfig,
        mut master: TTYPort,
        slave: Option<TTYPort>,
        announcement: Option<Announcement>,
        tty_path: String,
        open_diag: Option<OpenDiag>,
        on_switch: Box<dyn FnOnce() + Send>,
    ) -> io::Result<RunningModem> {
        master.set_timeout(POLL_INTERVAL).map_err(io::Error::from)?;
        let address = format!("serial:{tty_path}");
        let shared = Arc::new(Shared::default());
        let sim = ModemSim {
            master,
            slave,
            announcement,
            faults: Injector::new(&cfg.faults, Arc::clone(&shared.faults_fired)),
            modem: Modem::new(cfg),
            shared: Arc::clone(&shared),
            open_diag,
            straight_to_edl: false,
        };
        let thread = thread::Builder::new()
            .name(format!("modem-sim {tty_path}"))
            .spawn(move || sim.run(on_switch))?;
        Ok(RunningModem {
            address,
            tty_path,
            shared,
            thread: Some(thread),
        })
    }

    fn run(mut self, on_switch: Box<dyn FnOnce() + Send>) {
        if let Ended::Switched = self.serve() {
            // Leave the bench and close the pty, as a rebooting modem leaves the bus.
            let ModemSim {
                master,
                slave,
                announcement,
                shared,
                open_diag,
                modem,
                straight_to_edl,
                ..
            } = self;
            drop(announcement);
            drop(slave);
            drop(master);
            shared.switched.store(true, Ordering::SeqCst);
            if modem.cfg.route == DownloadRoute::Diag && !straight_to_edl {
                // Factory mode: back with a DIAG port, which the download request ends.
                let Some(open_diag) = open_diag else {
                    tracing::error!("the virtual modem has no DIAG port to come back with");
                    return;
                };
                thread::sleep(SWITCH_DELAY);
                let mut line = match open_diag() {
                    Ok(line) => line,
                    Err(e) => {
                        tracing::error!("the virtual modem's DIAG port could not appear: {e}");
                        return;
                    }
                };
                if !diag::serve(&mut line, &shared.stopping, &shared.diag_requests) {
                    return;
                }
                // The DIAG port leaves the bus before the device comes back in EDL.
                drop(line);
            }
            on_switch();
        }
    }

    /// Reads command lines (ended by CR; LF is ignored) and answers them.
    fn serve(&mut self) -> Ended {
        let mut buf = [0u8; 256];
        let mut line = Vec::with_capacity(MAX_COMMAND_LINE);
        let mut overflow = false;
        while !self.shared.stopping.load(Ordering::SeqCst) {
            let n = match self.master.read(&mut buf) {
                Ok(n) if n > 0 => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                // Not expected while the slave side is held open; back off rather than spin.
                other => {
                    tracing::debug!("modem sim: read gave {other:?}");
                    thread::sleep(POLL_INTERVAL);
                    continue;
                }
            };
            for &byte in &buf[..n] {
                match byte {
                    b'\r' => {
                        let received = std::mem::take(&mut line);
                        let too_long = std::mem::replace(&mut overflow, false);
                        if self.answer(&received, too_long) {
                            return Ended::Switched;
                        }
                    }
                    b'\n' => {}
                    _ if line.len() == MAX_COMMAND_LINE => overflow = true,
                    _ => line.push(byte),
                }
            }
        }
        Ended::Stopped
    }

    /// Answers one received line and says whether the modem must now vanish. Lines not
    /// starting with `AT` are noise a modem ignores.
    fn answer(&mut self, received: &[u8], too_long: bool) -> bool {
        self.faults.add_received(received.len() as u64 + 1);
        self.modem.battery_percent = self.faults.battery(self.modem.cfg.battery_percent);
        let text = String::from_utf8_lossy(received).trim().to_string();
        let reply = if too_long {
            lock(&self.shared.commands).push(format!("<{MAX_COMMAND_LINE}+ byte line>"));
            Reply::error()
        } else if starts_with_at(&text) {
            lock(&self.shared.commands).push(text.clone());
            if self.modem.echo {
                self.send(format!("{text}\r").as_bytes());
            }
            match self.faults.on_command(&text, Match::IgnoreAsciiCase) {
                Some(Reaction::Fail) => Reply::error(),
                // A drop is refused for the modem by its config check (see `check`).
                Some(Reaction::Stall | Reaction::Drop) => return false,
                Some(Reaction::Garbage) => {
                    self.send(&fault::garbage(b"\r\n"));
                    return false;
                }
                Some(Reaction::Reenumerate) => {
                    self.straight_to_edl = true;
                    return true;
                }
                None => self.modem.handle(&text),
            }
        } else {
            return false;
        };
        self.send(&self.modem.encode(&reply));
        if reply.switch {
            thread::sleep(SWITCH_DELAY);
        }
        reply.switch
    }

    fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.master.write_all(bytes) {
            // Nobody is reading (the host closed the port) and the pty buffer is full.
            tracing::debug!("modem sim: answer dropped: {e}");
        }
    }
}

/// A modem serving on a background thread. Dropping it stops the modem too.
pub struct RunningModem {
    address: String,
    tty_path: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl RunningModem {
    /// The address to open it with: `serial:/dev/pts/N`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The pty path a host opens (`/dev/pts/N`); it vanishes when the modem switches.
    pub fn tty_path(&self) -> &str {
        &self.tty_path
    }

    /// Every command line received so far, oldest first, as sent (without the CR).
    /// A line over [`MAX_COMMAND_LINE`] bytes appears as `<512+ byte line>`.
    pub fn commands(&self) -> Vec<String> {
        lock(&self.shared.commands).clone()
    }

    /// Every DIAG request its DIAG port received, oldest first, in hex (`3a` for
    /// `DIAG_DLOAD_F`).
    pub fn diag_requests(&self) -> Vec<String> {
        lock(&self.shared.diag_requests).clone()
    }

    /// Whether the modem vanished into download mode (its download command, or an
    /// injected re-enumeration).
    pub fn switched(&self) -> bool {
        self.shared.switched.load(Ordering::SeqCst)
    }

    /// The injected faults that have fired so far, oldest first, in their textual form
    /// (`fail@AT+CGMR#1`, `battery@bytes=0,percent=5`, …).
    pub fn faults_fired(&self) -> Vec<String> {
        lock(&self.shared.faults_fired).clone()
    }

    /// Stops serving, withdraws the announcement and closes the pty.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        if thread.join().is_err() {
            tracing::error!("modem sim thread panicked");
        }
    }
}

impl Drop for RunningModem {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(modem: &mut Modem, line: &str) -> String {
        let reply = modem.handle(line);
        String::from_utf8(modem.encode(&reply)).unwrap()
    }

    #[test]
    fn identification_answers_in_both_forms() {
        let mut modem = Modem::new(ModemConfig::dongle());
        assert_eq!(
            answer(&mut modem, "AT+CGMI"),
            "\r\nZTE CORPORATION\r\n\r\nOK\r\n"
        );
        assert_eq!(answer(&mut modem, "at+cgmm"), "\r\nMF833V\r\n\r\nOK\r\n");
        assert_eq!(
            answer(&mut modem, "AT+CGSN"),
            "\r\n868611040000015\r\n\r\nOK\r\n"
        );
        assert_eq!(
            answer(&mut modem, "AT+CGSN=1"),
            "\r\n+CGSN: \"868611040000015\"\r\n\r\nOK\r\n"
        );
        assert_eq!(modem.handle("ATI").info.len(), 4);
    }

    #[test]
    fn battery_depends_on_the_kind() {
        let mut dongle = Modem::new(ModemConfig::dongle());
        assert_eq!(dongle.handle("AT+CBC").info, ["+CBC: 2,0"]);
        let mut hotspot = Modem::new(ModemConfig {
            charging: true,
            battery_percent: 42,
            ..ModemConfig::hotspot()
        });
        assert_eq!(hotspot.handle("AT+CBC").info, ["+CBC: 1,42"]);
    }

    #[test]
    fn errors_follow_cmee_and_echo_follows_ate() {
        let mut modem = Modem::new(ModemConfig::dongle());
        assert!(modem.echo);
        assert_eq!(answer(&mut modem, "AT+NOPE"), "\r\nERROR\r\n");
        answer(&mut modem, "AT+CMEE=1");
        assert_eq!(answer(&mut modem, "AT+NOPE"), "\r\n+CME ERROR: 100\r\n");
        answer(&mut modem, "AT+CMEE=2");
        assert_eq!(answer(&mut modem, "AT+NOPE"), "\r\n+CME ERROR: unknown\r\n");
        assert_eq!(modem.handle("AT+CMEE?").info, ["+CMEE: 2"]);
        answer(&mut modem, "ATE0");
        assert!(!modem.echo);
        answer(&mut modem, "ATE1");
        assert!(modem.echo);
    }

    #[test]
    fn only_the_download_command_switches() {
        let mut modem = Modem::new(ModemConfig::dongle());
        assert!(!modem.handle("AT+ZCDRUN=F").switch);
        assert_eq!(
            modem.handle("AT+ZDLMODE=1").outcome,
            Outcome::Error,
            "an invented command"
        );
        let reply = modem.handle("at+zcdrun=e");
        assert!(reply.switch);
        assert_eq!(reply.outcome, Outcome::Ok);
    }

    #[test]
    fn unsolicited_codes_interleave_with_information() {
        let mut modem = Modem::new(ModemConfig {
            unsolicited: true,
            ..ModemConfig::dongle()
        });
        assert_eq!(
            answer(&mut modem, "AT+CGMM"),
            "\r\nMF833V\r\n\r\n+CREG: 1\r\n\r\nOK\r\n"
        );
    }

    #[test]
    fn bad_configs_are_invalid_input() {
        let bad = [
            ModemConfig {
                imei: "12345".into(),
                ..ModemConfig::dongle()
            },
            ModemConfig {
                battery_percent: 101,
                ..ModemConfig::hotspot()
            },
            ModemConfig {
                model: "MF\r\nOK".into(),
                ..ModemConfig::dongle()
            },
            ModemConfig {
                download_command: "+ZCDRUN=E".into(),
                ..ModemConfig::dongle()
            },
        ];
        for cfg in bad {
            let err = ModemSim::start(cfg, None, Box::new(|| {})).err().unwrap();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err
                .get_ref()
                .is_some_and(|e| e.downcast_ref::<ModemConfigError>().is_some()));
        }
    }
}
