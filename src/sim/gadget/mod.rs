//! Virtual USB devices on a real USB bus, through Linux's USB gadget framework (Linux only).
//!
//! Everything else in [`crate::sim`] speaks over TCP or a pseudo-terminal, which leaves the
//! host side's USB paths (libusb bulk transfers, USB discovery, hotplug, cdc-acm ttys)
//! untested. A gadget built here appears on the bus of a USB device controller (UDC) — with
//! `dummy_hcd` that bus is the same machine's, so host and device side run side by side, as
//! in the QEMU lab under `tests/usb-lab`.
//!
//! A gadget is a configfs tree (`/sys/kernel/config/usb_gadget/<name>`) with the device's
//! IDs and strings, one configuration and one function:
//!
//! * [`Function::Bulk`]: a FunctionFS interface with one bulk OUT and one bulk IN endpoint,
//!   served by this process (fastboot, Qualcomm EDL); see [`BulkOut`] and [`BulkIn`].
//! * [`Function::Acm`]: a CDC ACM serial function served by the kernel; the device side is
//!   the tty [`Gadget::tty_path`] (a USB modem's AT port).
//!
//! The gadget is removed when the [`Gadget`] is dropped.

mod configfs;
mod ffs;

use std::io;
use std::path::{Path, PathBuf};

pub use ffs::{BulkIn, BulkOut};

use configfs::Tree;
use ffs::FunctionFs;

/// The one function a gadget carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// A vendor interface with a bulk OUT and a bulk IN endpoint, served by this process.
    Bulk {
        /// `bInterfaceClass` (0xff: vendor specific).
        class: u8,
        /// `bInterfaceSubClass` (fastboot: 0x42).
        subclass: u8,
        /// `bInterfaceProtocol` (fastboot: 0x03).
        protocol: u8,
    },
    /// A CDC ACM serial port; the host sees `/dev/ttyACM<N>`, this side `/dev/ttyGS<N>`.
    Acm,
}

/// What the host will see when the gadget enumerates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GadgetSpec {
    /// Directory name under `/sys/kernel/config/usb_gadget`; also names the function
    /// instance. Letters, digits, `_` and `-` only.
    pub name: String,
    /// `idVendor`.
    pub vid: u16,
    /// `idProduct`.
    pub pid: u16,
    /// Manufacturer string.
    pub manufacturer: String,
    /// Product string (also the configuration's and the interface's name).
    pub product: String,
    /// Serial number string: what `fastboot devices` and `flashline devices` show.
    pub serial: String,
    /// The function.
    pub function: Function,
}

/// Why a gadget could not be built or changed. Each says which piece of the kernel setup
/// is missing, since that is nearly always the cause.
#[derive(Debug, thiserror::Error)]
pub enum GadgetError {
    /// No configfs, or no gadget support in it.
    #[error(
        "{} does not exist: mount configfs (mount -t configfs none /sys/kernel/config) \
         and load libcomposite",
        configfs::GADGET_ROOT
    )]
    NoConfigfs,
    /// No USB device controller to attach the gadget to.
    #[error(
        "no free USB device controller in /sys/class/udc: load dummy_hcd (a virtual one) \
         or use a machine with a device-mode USB port"
    )]
    NoUdc,
    /// The kernel does not know the function type.
    #[error("the kernel has no USB function {0:?}: load its module ({1})")]
    NoFunctionModule(&'static str, &'static str),
    /// The gadget name cannot be a directory name.
    #[error("gadget name {0:?} is not allowed: use 1 to 32 letters, digits, '_' or '-'")]
    BadName(String),
    /// A string contains a newline or NUL, which configfs and FunctionFS cannot carry.
    #[error("gadget string {0:?} contains a newline or NUL")]
    BadString(String),
    /// A gadget of this name exists already (left over, or in use by another process).
    #[error("{} already exists: another gadget of this name is set up", .0.display())]
    Exists(PathBuf),
    /// This function has no such endpoint or tty.
    #[error("a {0} gadget has no {1}")]
    WrongFunction(&'static str, &'static str),
    /// A file in configfs or FunctionFS could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying failure.
        source: io::Error,
    },
}

impl From<GadgetError> for io::Error {
    fn from(e: GadgetError) -> Self {
        let kind = match &e {
            GadgetError::BadName(_) | GadgetError::BadString(_) => io::ErrorKind::InvalidInput,
            GadgetError::Exists(_) => io::ErrorKind::AlreadyExists,
            GadgetError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::NotFound,
        };
        io::Error::new(kind, e)
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> GadgetError + '_ {
    move |source| GadgetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A gadget set up in configfs and bound to a USB device controller.
pub struct Gadget {
    /// The FunctionFS side of a [`Function::Bulk`] gadget. Declared before `tree`: it is
    /// unmounted before the function directory it belongs to is removed.
    ffs: Option<FunctionFs>,
    tree: Tree,
    /// `/dev/ttyGS<N>` of a [`Function::Acm`] gadget.
    tty: Option<PathBuf>,
}

impl Gadget {
    /// Builds the gadget and binds it to the first free UDC: it enumerates on the host now.
    pub fn create(spec: &GadgetSpec) -> Result<Self, GadgetError> {
        validate(spec)?;
        configfs::check()?;
        let udc = configfs::free_udc()?;
        let mut tree = Tree::create(spec)?;
        let (ffs, tty) = match spec.function {
            Function::Bulk {
                class,
                subclass,
                protocol,
            } => {
                tree.add_function("ffs", &spec.name)?;
                let ffs =
                    FunctionFs::start(&spec.name, (class, subclass, protocol), &spec.product)?;
                (Some(ffs), None)
            }
            Function::Acm => {
                let dir = tree.add_function("acm", &spec.name)?;
                let port_file = dir.join("port_num");
                let port = std::fs::read_to_string(&port_file).map_err(at(&port_file))?;
                (
                    None,
                    Some(PathBuf::from(format!("/dev/ttyGS{}", port.trim()))),
                )
            }
        };
        let gadget = Gadget { ffs, tree, tty };
        gadget.tree.bind(&udc)?;
        tracing::info!(name = %spec.name, %udc, "USB gadget bound");
        Ok(gadget)
    }

    /// The bulk endpoints of a [`Function::Bulk`] gadget: reads block until the host sends
    /// a transfer, and fail while the gadget is unbound or the host has not configured it.
    pub fn bulk_endpoints(&self) -> Result<(BulkOut, BulkIn), GadgetError> {
        self.ffs
            .as_ref()
            .ok_or(GadgetError::WrongFunction("ACM", "bulk endpoints"))?
            .endpoints()
    }

    /// The device side of a [`Function::Acm`] gadget's serial line, `/dev/ttyGS<N>`.
    pub fn tty_path(&self) -> Result<&Path, GadgetError> {
        self.tty
            .as_deref()
            .ok_or(GadgetError::WrongFunction("bulk", "tty"))
    }

    /// Detaches the gadget from its controller: the host sees the device unplugged.
    pub fn unbind(&self) -> Result<(), GadgetError> {
        self.tree.unbind()
    }

    /// Attaches the gadget to a free controller again: the host sees it plugged in.
    pub fn bind(&self) -> Result<(), GadgetError> {
        let udc = configfs::free_udc()?;
        self.tree.bind(&udc)
    }

    /// Changes the product string: a device that reboots into another mode may name
    /// itself differently there. Takes effect at the next [`Gadget::bind`].
    pub fn set_product(&self, product: &str) -> Result<(), GadgetError> {
        self.tree.set_product(product)
    }

    /// The gadget's configfs directory.
    pub fn path(&self) -> &Path {
        self.tree.path()
    }

    /// A handle that removes this gadget from anywhere, e.g. from a thread that waits for
    /// SIGINT/SIGTERM while another serves the gadget: dropping the [`Gadget`] is not
    /// possible then, and a process that exits without removing its gadget leaves it
    /// dead on the bus, its name taken.
    pub fn remover(&self) -> Remover {
        Remover {
            udc_file: self.tree.udc_file(),
            mount_point: self.ffs.as_ref().map(|f| f.mount_point().to_path_buf()),
            undo: self.tree.undo_steps().to_vec(),
        }
    }
}

/// Removes a gadget whose [`Gadget`] cannot be dropped; see [`Gadget::remover`]. For a
/// process about to exit: the [`Gadget`] must not be used (or dropped) afterwards.
#[derive(Debug, Clone)]
pub struct Remover {
    udc_file: PathBuf,
    mount_point: Option<PathBuf>,
    undo: Vec<configfs::Undo>,
}

impl Remover {
    /// Unplugs the gadget and removes it, as dropping the [`Gadget`] would.
    pub fn remove(&self) {
        if let Err(e) = configfs::detach(&self.udc_file) {
            tracing::warn!("removing USB gadget: {e}");
        }
        if let Some(mount_point) = &self.mount_point {
            ffs::unmount(mount_point);
        }
        configfs::undo(&self.undo);
    }
}

/// SIGINT and SIGTERM, blocked in every thread so that one thread can wait for them and
/// remove a gadget before the process exits: a serving thread blocks in reads nothing
/// interrupts, and a gadget left behind stays dead on the bus, its name taken.
pub struct StopSignals(nix::sys::signal::SigSet);

impl StopSignals {
    /// Blocks the signals; call it before any thread starts, so every thread inherits it.
    pub fn block() -> io::Result<Self> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block().map_err(io::Error::from)?;
        Ok(StopSignals(set))
    }

    /// Starts the thread that, on the first signal, removes the gadget, says so (`what` was
    /// unplugged) and exits the process.
    pub fn remove_on_signal(self, remover: Remover, what: &'static str) -> io::Result<()> {
        std::thread::Builder::new()
            .name("stop-signal".into())
            .spawn(move || {
                let signal = self.0.wait();
                remover.remove();
                eprintln!("{what} unplugged ({signal:?})");
                std::process::exit(0);
            })
            .map(drop)
    }
}

impl Drop for Gadget {
    fn drop(&mut self) {
        // Unplug first, so the host lets go before the function disappears.
        if let Err(e) = self.tree.unbind() {
            tracing::warn!("removing USB gadget: {e}");
        }
        // Then the fields drop: FunctionFS unmounts, the configfs tree removes itself.
    }
}

/// A gadget name for a simulator `role` (`phone`, `edl`, `modem`) and its serial number:
/// gadget names allow fewer characters than serial numbers, and one per role and serial
/// keeps two simulators from taking each other's gadget.
pub fn gadget_name(role: &str, serial: &str) -> String {
    let safe: String = serial
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(16)
        .collect();
    format!("flashline-{role}-{safe}")
}

fn validate(spec: &GadgetSpec) -> Result<(), GadgetError> {
    let name_ok = (1..=32).contains(&spec.name.len())
        && spec
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !name_ok {
        return Err(GadgetError::BadName(spec.name.clone()));
    }
    for s in [&spec.manufacturer, &spec.product, &spec.serial] {
        if s.contains(['\n', '\0']) {
            return Err(GadgetError::BadString(s.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gadget_names_are_safe_directory_names() {
        assert_eq!(
            gadget_name("phone", "FLSIM0001"),
            "flashline-phone-FLSIM0001"
        );
        assert_eq!(gadget_name("edl", "a/b c"), "flashline-edl-a_b_c");
        assert!(gadget_name("modem", &"x".repeat(64)).len() <= 32);
    }

    fn spec() -> GadgetSpec {
        GadgetSpec {
            name: "fl-test".into(),
            vid: 0x18d1,
            pid: 0x4ee0,
            manufacturer: "flashline".into(),
            product: "virtual phone".into(),
            serial: "FLSIM0001".into(),
            function: Function::Acm,
        }
    }

    #[test]
    fn names_and_strings_are_checked_first() {
        for name in ["", "a/b", "..", &"x".repeat(33)] {
            let bad = GadgetSpec {
                name: name.into(),
                ..spec()
            };
            assert!(
                matches!(validate(&bad), Err(GadgetError::BadName(_))),
                "{name:?}"
            );
        }
        let bad = GadgetSpec {
            serial: "A\nB".into(),
            ..spec()
        };
        assert!(matches!(validate(&bad), Err(GadgetError::BadString(_))));
        assert!(validate(&spec()).is_ok());
    }

    #[test]
    fn a_machine_without_gadget_support_says_what_is_missing() {
        // This machine (and most CI runners) have no configfs gadget support or no UDC;
        // inside the QEMU lab both exist and the lab's scenarios cover creation.
        if Path::new(configfs::GADGET_ROOT).exists() {
            return;
        }
        let err = Gadget::create(&spec()).err().expect("no configfs here");
        assert!(
            matches!(err, GadgetError::NoConfigfs | GadgetError::NoUdc),
            "{err}"
        );
        assert!(err.to_string().contains("load"), "{err}");
    }
}
