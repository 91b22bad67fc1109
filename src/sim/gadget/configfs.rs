//! The configfs side of a gadget: directories and attribute files under
//! `/sys/kernel/config/usb_gadget`, undone in reverse order when dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{at, GadgetError, GadgetSpec};

/// Where libcomposite exposes gadgets in configfs.
pub(super) const GADGET_ROOT: &str = "/sys/kernel/config/usb_gadget";
/// Where the kernel lists USB device controllers.
const UDC_CLASS: &str = "/sys/class/udc";
/// US English, the one string table a gadget carries.
const LANG: &str = "0x409";
/// The one configuration.
const CONFIG: &str = "configs/c.1";

/// One step to undo on removal.
#[derive(Debug, Clone)]
pub(super) enum Undo {
    Rmdir(PathBuf),
    Unlink(PathBuf),
}

/// A gadget's configfs directory and everything made in it.
pub(super) struct Tree {
    root: PathBuf,
    undo: Vec<Undo>,
}

impl Tree {
    /// Makes the gadget's directory with its IDs, strings and one configuration.
    pub fn create(spec: &GadgetSpec) -> Result<Self, GadgetError> {
        let root = Path::new(GADGET_ROOT).join(&spec.name);
        if root.exists() {
            return Err(GadgetError::Exists(root));
        }
        let mut tree = Tree {
            root,
            undo: Vec::new(),
        };
        tree.mkdir("")?;
        tree.write("idVendor", &format!("0x{:04x}", spec.vid))?;
        tree.write("idProduct", &format!("0x{:04x}", spec.pid))?;
        tree.write("bcdUSB", "0x0200")?;
        tree.write("bcdDevice", "0x0100")?;
        let strings = format!("strings/{LANG}");
        tree.mkdir(&strings)?;
        tree.write(&format!("{strings}/manufacturer"), &spec.manufacturer)?;
        tree.write(&format!("{strings}/product"), &spec.product)?;
        // An empty serial is no serial: iSerialNumber stays 0, as on most EDL devices.
        if !spec.serial.is_empty() {
            tree.write(&format!("{strings}/serialnumber"), &spec.serial)?;
        }
        tree.mkdir(CONFIG)?;
        tree.write(&format!("{CONFIG}/MaxPower"), "250")?;
        tree.mkdir(&format!("{CONFIG}/strings/{LANG}"))?;
        tree.write(
            &format!("{CONFIG}/strings/{LANG}/configuration"),
            &spec.product,
        )?;
        Ok(tree)
    }

    /// Creates function `<kind>.<instance>` and links it into the configuration; returns
    /// its directory.
    pub fn add_function(
        &mut self,
        kind: &'static str,
        instance: &str,
    ) -> Result<PathBuf, GadgetError> {
        let name = format!("{kind}.{instance}");
        let dir = self.root.join("functions").join(&name);
        match fs::create_dir(&dir) {
            Ok(()) => self.undo.push(Undo::Rmdir(dir.clone())),
            // configfs answers ENOENT when no loaded module provides the function type.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let module = match kind {
                    "ffs" => "usb_f_fs",
                    _ => "usb_f_acm",
                };
                return Err(GadgetError::NoFunctionModule(kind, module));
            }
            Err(e) => return Err(at(&dir)(e)),
        }
        let link = self.root.join(CONFIG).join(&name);
        std::os::unix::fs::symlink(&dir, &link).map_err(at(&link))?;
        self.undo.push(Undo::Unlink(link));
        Ok(dir)
    }

    /// Attaches the gadget to controller `udc`.
    pub fn bind(&self, udc: &str) -> Result<(), GadgetError> {
        self.write("UDC", udc)
    }

    /// Detaches the gadget from its controller, if it is attached.
    pub fn unbind(&self) -> Result<(), GadgetError> {
        detach(&self.udc_file())
    }

    /// Changes the product string the host reads at the next enumeration (while unbound).
    pub fn set_product(&self, product: &str) -> Result<(), GadgetError> {
        self.write(&format!("strings/{LANG}/product"), product)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn udc_file(&self) -> PathBuf {
        self.root.join("UDC")
    }

    /// The steps that remove the tree, oldest first.
    pub fn undo_steps(&self) -> &[Undo] {
        &self.undo
    }

    fn mkdir(&mut self, relative: &str) -> Result<(), GadgetError> {
        let dir = self.root.join(relative);
        fs::create_dir(&dir).map_err(at(&dir))?;
        self.undo.push(Undo::Rmdir(dir));
        Ok(())
    }

    fn write(&self, relative: &str, value: &str) -> Result<(), GadgetError> {
        let path = self.root.join(relative);
        fs::write(&path, value).map_err(at(&path))
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        undo(&self.undo);
        self.undo.clear();
    }
}

/// Removes what a [`Tree`] made, newest first; logs what cannot be removed.
pub(super) fn undo(steps: &[Undo]) {
    for step in steps.iter().rev() {
        let (path, result) = match step {
            Undo::Rmdir(dir) => (dir, fs::remove_dir(dir)),
            Undo::Unlink(link) => (link, fs::remove_file(link)),
        };
        if let Err(e) = result {
            tracing::warn!("removing USB gadget: {}: {e}", path.display());
        }
    }
}

/// Writing an empty line to a gadget's `UDC` file detaches it; nothing to do when it is
/// detached already (the kernel refuses the write then).
pub(super) fn detach(udc_file: &Path) -> Result<(), GadgetError> {
    let udc = fs::read_to_string(udc_file).map_err(at(udc_file))?;
    if udc.trim().is_empty() {
        return Ok(());
    }
    fs::write(udc_file, "\n").map_err(at(udc_file))
}

/// Fails with [`GadgetError::NoConfigfs`] unless gadgets can be made here.
pub(super) fn check() -> Result<(), GadgetError> {
    if Path::new(GADGET_ROOT).is_dir() {
        Ok(())
    } else {
        Err(GadgetError::NoConfigfs)
    }
}

/// The first USB device controller no gadget is attached to.
pub(super) fn free_udc() -> Result<String, GadgetError> {
    let mut udcs: Vec<String> = match fs::read_dir(UDC_CLASS) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => return Err(GadgetError::NoUdc),
    };
    udcs.sort();
    let in_use: Vec<String> = fs::read_dir(GADGET_ROOT)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| fs::read_to_string(e.path().join("UDC")).ok())
        .map(|udc| udc.trim().to_string())
        .collect();
    udcs.into_iter()
        .find(|udc| !in_use.contains(udc))
        .ok_or(GadgetError::NoUdc)
}
