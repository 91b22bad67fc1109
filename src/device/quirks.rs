//! Device knowledge as data: the quirks file (`assets/quirks.toml`).
//!
//! Like fwupd's quirk files, this keeps per-model facts out of the code: which USB IDs mean
//! which mode, and how to read facts that standard fastboot does not define (firmware
//! version, security version, battery) from a given model.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::protocol::diag::DownloadRequest;
use crate::protocol::sahara::identity::{chip_fits, parse_pk_hash};
use crate::protocol::sahara::Hwid;

/// The quirks file shipped with flashline.
pub const BUILTIN: &str = include_str!("../../assets/quirks.toml");

/// Why a quirks file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum QuirksError {
    /// Not valid TOML or not the expected shape.
    #[error("quirks file is invalid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A `pattern` is not a valid regular expression.
    #[error("quirks entry for {product}: bad pattern: {source}")]
    Pattern {
        /// The model entry.
        product: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A `millivolts` range whose full voltage is not above the empty voltage.
    #[error("quirks entry for {0}: millivolts must be [EMPTY, FULL] with EMPTY < FULL")]
    Voltage(String),
    /// A recovery entry with no steps or an unknown mode.
    #[error("quirks entry for {0}: recovery needs a mode flashline recovers in (edl, fastboot or zxic) and at least one step")]
    Recovery(String),
    /// The same product named twice.
    #[error("quirks file names product {0:?} twice")]
    DuplicateProduct(String),
    /// A value the entry cannot use (a hardware id, a key hash, a DIAG request).
    #[error("quirks entry for {owner}: {what}")]
    BadValue {
        /// The model or USB ID.
        owner: String,
        /// What is wrong.
        what: String,
    },
}

/// Where a device fact comes from, so nobody mistakes a report for a tested fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Tried on real hardware by this project.
    HardwareVerified,
    /// Seen in public reports (forum posts, wikis, other tools' sources), not on hardware
    /// this project tested; `source` names where.
    PublicReports {
        /// Where the reports are (URLs).
        source: String,
    },
    /// A fact of flashline's own simulators.
    Virtual,
}

impl Provenance {
    /// Whether the fact rests on public reports only.
    pub fn reports_only(&self) -> bool {
        matches!(self, Provenance::PublicReports { .. })
    }
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provenance::HardwareVerified => f.write_str("hardware-verified"),
            Provenance::PublicReports { source } => write!(f, "public reports: {source}"),
            Provenance::Virtual => f.write_str("virtual"),
        }
    }
}

impl<'de> Deserialize<'de> for Provenance {
    /// `hardware-verified`, `virtual`, or `public reports: <sources>`.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim() {
            "hardware-verified" => Ok(Provenance::HardwareVerified),
            "virtual" => Ok(Provenance::Virtual),
            other => match other.strip_prefix("public reports:").map(str::trim) {
                Some(source) if !source.is_empty() => Ok(Provenance::PublicReports {
                    source: source.to_string(),
                }),
                _ => Err(serde::de::Error::custom(format!(
                    "provenance {text:?} must be \"hardware-verified\", \"virtual\" or \"public reports: <source>\""
                ))),
            },
        }
    }
}

/// The parsed quirks file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirks {
    /// How fastboot facts are read from any device.
    pub fastboot: FastbootFacts,
    /// Per-model overrides.
    #[serde(default, rename = "model")]
    pub models: Vec<Model>,
    /// Known USB IDs.
    #[serde(default, rename = "usb")]
    pub usb: Vec<UsbId>,
}

/// One model's overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// What the device reports as its product.
    pub product: String,
    /// A readable name.
    pub name: Option<String>,
    /// Fastboot facts that differ from the default.
    #[serde(default)]
    pub fastboot: PartialFastbootFacts,
    /// For modems and hotspots: how to read and switch them over AT.
    pub at: Option<AtFacts>,
    /// Partitions holding the device's identity and calibration (IMEI, NV, RF data), read
    /// back and kept before anything is written.
    #[serde(default)]
    pub backup: Vec<String>,
    /// How a person brings this model into the mode it is recovered in, when it is bricked
    /// or not found.
    pub recovery: Option<Recovery>,
    /// The MSM hardware id its boot ROM reports in EDL (`0x` + 16 hex digits), which names
    /// a bricked device that cannot say what it is.
    pub hwid: Option<String>,
    /// The hash of the OEM key its boot ROM accepts programmers from (hex), as reported in
    /// EDL.
    pub pk_hash: Option<String>,
    /// Where the entry's facts come from.
    pub provenance: Option<Provenance>,
    /// For ZXIC ZX297520V3 devices: where its NV partitions are (see [`ZxicFacts`]).
    #[serde(default)]
    pub zxic: Option<ZxicFacts>,
}

/// What flashline knows of a ZXIC model's flash before talking to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZxicFacts {
    /// Where each NV partition (the model's `backup` labels) lies on a device as it left
    /// the factory, `name@0xADDRESS+0xSIZE`: a package whose table moves one is refused
    /// before anything is sent. Without it, the device's own check decides.
    #[serde(default)]
    pub nv_layout: Vec<String>,
}

impl ZxicFacts {
    /// The NV layout as (name, address, size).
    pub fn nv(&self) -> Vec<(String, u32, u32)> {
        self.nv_layout.iter().filter_map(|e| parse_nv(e)).collect()
    }
}

/// `name@0xADDRESS+0xSIZE`.
fn parse_nv(entry: &str) -> Option<(String, u32, u32)> {
    let (name, place) = entry.split_once('@')?;
    let (address, size) = place.split_once('+')?;
    let hex = |t: &str| u32::from_str_radix(t.strip_prefix("0x")?, 16).ok();
    Some((name.to_string(), hex(address)?, hex(size)?))
}

impl Model {
    /// Whether a device in EDL with these chip facts is this model: every fact both sides
    /// know must agree, and at least one must be known on both.
    pub fn matches_chip(&self, hwid: Option<Hwid>, pk_hash: Option<&str>) -> bool {
        let model_hwid = self.hwid.as_deref().and_then(Hwid::parse);
        chip_fits(model_hwid, self.pk_hash.as_deref(), hwid, pk_hash) == Some(true)
    }

    /// Checks the values serde cannot: hardware id, key hash, DIAG request.
    fn check_values(&self) -> Result<(), QuirksError> {
        let bad = |what: String| QuirksError::BadValue {
            owner: self.product.clone(),
            what,
        };
        if let Some(hwid) = &self.hwid {
            Hwid::parse(hwid)
                .ok_or_else(|| bad(format!("hwid {hwid:?} is not 0x and up to 16 hex digits")))?;
        }
        if let Some(hash) = &self.pk_hash {
            parse_pk_hash(hash).ok_or_else(|| {
                bad(format!(
                    "pk_hash {hash:?} is not a hash of 32 to 128 bytes in hex"
                ))
            })?;
        }
        for entry in self.zxic.iter().flat_map(|z| &z.nv_layout) {
            parse_nv(entry).ok_or_else(|| {
                bad(format!(
                    "nv_layout entry {entry:?} is not name@0xADDRESS+0xSIZE"
                ))
            })?;
        }
        if let Some(request) = self.at.as_ref().and_then(|a| a.diag_request.as_deref()) {
            DownloadRequest::from_name(request).ok_or_else(|| {
                bad(format!(
                    "diag_request {request:?} is not \"dload\" or \"subsys-edl\""
                ))
            })?;
        }
        Ok(())
    }
}

/// Step-by-step guidance into a recovery mode, shown by the recovery wizard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// The mode the steps lead to, one flashline can recover a device in: `edl`, `fastboot`
    /// `zxic` (a ZXIC boot ROM) or `unisoc` (the boot ROM's download mode).
    pub mode: String,
    /// What to do, one action per step, in order.
    pub steps: Vec<String>,
}

/// How a modem or hotspot is handled over AT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtFacts {
    /// Whether the model has a battery at all.
    pub battery: bool,
    /// How to read a comparable version from what `+CGMR` reports (`var` is informational).
    pub version: VarSpec,
    /// The AT command that starts the way to download mode (ZTE: `AT+ZCDRUN=E`, factory
    /// mode). The device then comes back with a DIAG port ([`AtFacts::diag_ports`]) or
    /// directly in EDL ([`AtFacts::counterparts`]), whichever it does.
    pub download: String,
    /// The DIAG request that sends it on from its DIAG port into EDL: `dload`
    /// (`DIAG_DLOAD_F`) or `subsys-edl` (`4B 65 01 00`).
    #[serde(default)]
    pub diag_request: Option<String>,
    /// USB IDs (`vvvv:pppp`) the device comes back with in download mode (EDL).
    pub counterparts: Vec<UsbPair>,
    /// USB IDs of the composition with a DIAG port the download command may lead to.
    #[serde(default)]
    pub diag_ports: Vec<UsbPair>,
    /// Where the route into download mode is known from; CLI and GUI say so when it rests
    /// on public reports only.
    pub provenance: Provenance,
}

impl AtFacts {
    /// The DIAG request named by [`AtFacts::diag_request`] (checked when the file is
    /// parsed); `dload` when none is named.
    pub fn diag_request(&self) -> DownloadRequest {
        self.diag_request
            .as_deref()
            .and_then(DownloadRequest::from_name)
            .unwrap_or(DownloadRequest::Dload)
    }
}

/// A USB vendor:product pair written `vvvv:pppp` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsbPair {
    /// Vendor ID.
    pub vid: u16,
    /// Product ID.
    pub pid: u16,
}

impl<'de> Deserialize<'de> for UsbPair {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let parse = |t: &str| u16::from_str_radix(t, 16).ok().filter(|_| t.len() == 4);
        match text.split_once(':') {
            Some((v, p)) => match (parse(v), parse(p)) {
                (Some(vid), Some(pid)) => Ok(UsbPair { vid, pid }),
                _ => Err(serde::de::Error::custom(format!(
                    "bad USB ID {text:?}: expected vvvv:pppp in hex"
                ))),
            },
            None => Err(serde::de::Error::custom(format!(
                "bad USB ID {text:?}: expected vvvv:pppp in hex"
            ))),
        }
    }
}

/// Where the non-standard fastboot facts come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastbootFacts {
    /// The variable carrying a firmware version comparable with a package's, if the model
    /// has one. None by default: `version-bootloader` is the bootloader's own build
    /// (`b1c1-0.3-6863019`, `MBM-3.0-uefi-e666aa4b16c-220816`), not the firmware a package
    /// installs, so only a model entry that knows better names a variable and a pattern.
    #[serde(default)]
    pub firmware_version: Option<VarSpec>,
    /// The anti-rollback security version.
    pub security_version: VarSpec,
    /// The battery charge.
    pub battery_percent: VarSpec,
    /// Partitions (without slot suffix) whose bootloader takes only raw images: a sparse
    /// image for them is expanded and sent raw, in one download.
    #[serde(default)]
    pub raw_only: Vec<String>,
}

/// A model's replacements for some of the [`FastbootFacts`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialFastbootFacts {
    /// Replaces the default firmware version source.
    pub firmware_version: Option<VarSpec>,
    /// Replaces the default security version source.
    pub security_version: Option<VarSpec>,
    /// Replaces the default battery source.
    pub battery_percent: Option<VarSpec>,
    /// Partitions this model's bootloader takes only as raw images (see
    /// [`FastbootFacts::raw_only`]).
    #[serde(default)]
    pub raw_only: Vec<String>,
}

/// One getvar variable and how to convert its value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VarSpec {
    /// The getvar variable name.
    pub var: String,
    /// A regular expression whose capture groups, joined with dots, form the value.
    pub pattern: Option<String>,
    /// `[EMPTY, FULL]` millivolts: the value is a voltage to map onto 0..=100 %.
    pub millivolts: Option<[u32; 2]>,
}

/// A USB vendor/product ID flashline knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsbId {
    /// Vendor ID.
    pub vid: u16,
    /// Product ID.
    pub pid: u16,
    /// The mode a device with these IDs is in (`fastboot`, `edl`, …).
    pub mode: String,
    /// A readable name.
    pub name: String,
    /// For a modem composition with several ttys (DIAG, NMEA, AT, PPP): the USB interface
    /// number of the AT port. Its other ttys are never written to as AT ports.
    pub at_interface: Option<u8>,
    /// The USB interface number of the composition's DIAG port, if it has one.
    pub diag_interface: Option<u8>,
    /// Where the entry's facts come from.
    pub provenance: Option<Provenance>,
}

/// What a tty of a known USB device is, by its interface number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRole {
    /// The AT command port (or the only port, or one whose interface is not known).
    At,
    /// The DIAG port.
    Diag,
    /// Another port of the composition (NMEA, PPP, …): never written to.
    Other,
}

impl UsbId {
    /// The role of this device's tty on USB interface `interface`.
    pub fn port_role(&self, interface: Option<u8>) -> PortRole {
        match interface {
            Some(i) if self.diag_interface == Some(i) => PortRole::Diag,
            Some(i) if self.at_interface.is_some_and(|at| at != i) => PortRole::Other,
            _ => PortRole::At,
        }
    }
}

impl Quirks {
    /// The quirks file built into flashline.
    pub fn builtin() -> Self {
        Self::parse(BUILTIN).expect("the built-in quirks file is valid (tested)")
    }

    /// Parses and checks a quirks file.
    pub fn parse(text: &str) -> Result<Self, QuirksError> {
        let quirks: Quirks = toml::from_str(text)?;
        let mut seen = BTreeSet::new();
        let default = ("default", &quirks.fastboot);
        for spec in [
            default.1.firmware_version.as_ref(),
            Some(&default.1.security_version),
            Some(&default.1.battery_percent),
        ]
        .into_iter()
        .flatten()
        {
            spec.check(default.0)?;
        }
        for model in &quirks.models {
            if !seen.insert(model.product.as_str()) {
                return Err(QuirksError::DuplicateProduct(model.product.clone()));
            }
            let f = &model.fastboot;
            if let Some(r) = &model.recovery {
                if !matches!(r.mode.as_str(), "edl" | "fastboot" | "zxic" | "unisoc")
                    || r.steps.is_empty()
                {
                    return Err(QuirksError::Recovery(model.product.clone()));
                }
            }
            model.check_values()?;
            for spec in [&f.firmware_version, &f.security_version, &f.battery_percent]
                .into_iter()
                .flatten()
                .chain(model.at.as_ref().map(|a| &a.version))
            {
                spec.check(&model.product)?;
            }
        }
        Ok(quirks)
    }

    /// The fastboot fact sources for a device reporting `product`.
    pub fn fastboot_facts(&self, product: Option<&str>) -> FastbootFacts {
        let mut facts = self.fastboot.clone();
        if let Some(model) = product.and_then(|p| self.models.iter().find(|m| m.product == p)) {
            let f = &model.fastboot;
            if let Some(s) = &f.firmware_version {
                facts.firmware_version = Some(s.clone());
            }
            if let Some(s) = &f.security_version {
                facts.security_version = s.clone();
            }
            if let Some(s) = &f.battery_percent {
                facts.battery_percent = s.clone();
            }
            facts.raw_only.extend(f.raw_only.iter().cloned());
        }
        facts
    }

    /// The entry for a model, if the quirks file has one.
    pub fn model(&self, product: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.product == product)
    }

    /// The models a device in EDL with these chip facts may be (see
    /// [`Model::matches_chip`]).
    pub fn models_for_chip(&self, hwid: Option<Hwid>, pk_hash: Option<&str>) -> Vec<&Model> {
        self.models
            .iter()
            .filter(|m| m.matches_chip(hwid, pk_hash))
            .collect()
    }

    /// The known entry for a USB ID, if any.
    pub fn usb(&self, vid: u16, pid: u16) -> Option<&UsbId> {
        self.usb.iter().find(|u| u.vid == vid && u.pid == pid)
    }

    /// udev rules granting the logged-in user access to every known USB ID.
    ///
    /// `uaccess` hands the device node to the seat's user through an ACL; no world-writable
    /// mode is ever set. Download modes (EDL, ZXIC, DIAG compositions) also get
    /// `ID_MM_DEVICE_IGNORE`, so ModemManager keeps off them, and every known modem's
    /// ttys get `uaccess` too, since flashline talks AT and DIAG there.
    pub fn udev_rules(&self) -> String {
        let mut out = String::from(
            "# Generated by `flashline udev-rules` from assets/quirks.toml; do not edit.\n\
             # Grants the logged-in user access to devices flashline can flash.\n",
        );
        for id in &self.usb {
            let download = matches!(id.mode.as_str(), "edl" | "zxic" | "unisoc")
                || id.diag_interface.is_some();
            let ignore = if download {
                ", ENV{ID_MM_DEVICE_IGNORE}=\"1\""
            } else {
                ""
            };
            out.push_str(&format!(
                "# {} ({})\nSUBSYSTEM==\"usb\", ATTR{{idVendor}}==\"{:04x}\", ATTR{{idProduct}}==\"{:04x}\", TAG+=\"uaccess\"{ignore}\n",
                id.name, id.mode, id.vid, id.pid
            ));
            if matches!(id.mode.as_str(), "modem" | "edl" | "zxic" | "unisoc") {
                out.push_str(&format!(
                    "SUBSYSTEM==\"tty\", ATTRS{{idVendor}}==\"{:04x}\", ATTRS{{idProduct}}==\"{:04x}\", TAG+=\"uaccess\"{ignore}\n",
                    id.vid, id.pid
                ));
            }
        }
        out
    }
}

impl VarSpec {
    fn check(&self, owner: &str) -> Result<(), QuirksError> {
        if let Some(p) = &self.pattern {
            regex::Regex::new(p).map_err(|source| QuirksError::Pattern {
                product: owner.to_string(),
                source,
            })?;
        }
        if let Some([empty, full]) = self.millivolts {
            if empty >= full {
                return Err(QuirksError::Voltage(owner.to_string()));
            }
        }
        Ok(())
    }

    /// Converts a raw value as the spec says; `None` if it does not match.
    pub fn convert(&self, raw: &str) -> Option<String> {
        let raw = raw.trim();
        let text = match &self.pattern {
            Some(p) => {
                // Checked when the file was parsed.
                let re = regex::Regex::new(p).ok()?;
                let caps = re.captures(raw)?;
                let parts: Vec<&str> = caps.iter().skip(1).flatten().map(|m| m.as_str()).collect();
                if parts.is_empty() {
                    caps.get(0)?.as_str().to_string()
                } else {
                    parts.join(".")
                }
            }
            None => raw.to_string(),
        };
        match self.millivolts {
            Some([empty, full]) => {
                let mv = crate::protocol::fastboot::vars::parse_millivolts(&text)?;
                let pct =
                    (u64::from(mv.clamp(empty, full) - empty) * 100) / u64::from(full - empty);
                Some(pct.to_string())
            }
            None => Some(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_file_parses() {
        let q = Quirks::builtin();
        assert!(
            q.fastboot.firmware_version.is_none(),
            "version-bootloader is no firmware version"
        );
        let demo = q.fastboot_facts(Some("zte-demo-phone")).firmware_version;
        let demo = demo.expect("the virtual phone's version is comparable");
        assert_eq!(demo.convert("2.1.0").as_deref(), Some("2.1.0"));
        assert_eq!(demo.convert("b1c1-0.3-6863019"), None);
        assert!(q.usb(0x05c6, 0x9008).is_some());
    }

    #[test]
    fn model_overrides_and_conversions() {
        let q = Quirks::builtin();
        let f = q.fastboot_facts(Some("zte-legacy-phone"));
        let version = f.firmware_version.unwrap();
        assert_eq!(version.var, "version-baseband");
        assert_eq!(version.convert("BD_P01V2.1.3B07").as_deref(), Some("2.1.3"));
        assert_eq!(f.battery_percent.convert("3850").as_deref(), Some("50"));
        assert_eq!(f.battery_percent.convert("5000").as_deref(), Some("100"));
        assert_eq!(f.battery_percent.convert("n/a"), None);
        // Voltages as bootloaders print them, units and all.
        assert_eq!(f.battery_percent.convert("3850mV").as_deref(), Some("50"));
        assert_eq!(f.battery_percent.convert("3.85V").as_deref(), Some("50"));
        assert_eq!(f.battery_percent.convert("0mv"), None);
        let modem = q.model("MF833V").and_then(|m| m.at.as_ref()).unwrap();
        assert!(!modem.battery);
        assert_eq!(
            modem.version.convert("BD_MF833VV1.0.0B12").as_deref(),
            Some("1.0.12")
        );
        assert_eq!(
            modem.counterparts[0],
            UsbPair {
                vid: 0x19d2,
                pid: 0x0076
            }
        );
        assert!(q
            .model("MU300")
            .unwrap()
            .backup
            .contains(&"modemst1".to_string()));
        for product in ["MF833V", "MU300", "zte-demo-phone"] {
            let r = q.model(product).and_then(|m| m.recovery.as_ref());
            assert!(r.is_some_and(|r| !r.steps.is_empty()), "{product}");
        }
        let d = q.fastboot_facts(Some("other"));
        assert_eq!(d.battery_percent.var, "battery-soc");
        assert!(d.firmware_version.is_none());
    }

    #[test]
    fn bad_files_are_refused() {
        let base = "[fastboot]\nsecurity_version={var=\"b\"}\nbattery_percent={var=\"c\"}\n";
        assert!(Quirks::parse(base).is_ok());
        assert!(matches!(
            Quirks::parse(&format!(
                "{base}[[model]]\nproduct=\"x\"\n[[model]]\nproduct=\"x\"\n"
            )),
            Err(QuirksError::DuplicateProduct(_))
        ));
        assert!(matches!(
            Quirks::parse(&format!(
                "{base}[[model]]\nproduct=\"x\"\nfastboot.battery_percent={{var=\"v\", millivolts=[4200,3500]}}\n"
            )),
            Err(QuirksError::Voltage(_))
        ));
        assert!(matches!(
            Quirks::parse(&format!(
                "{base}[[model]]\nproduct=\"x\"\nfastboot.firmware_version={{var=\"v\", pattern=\"(\"}}\n"
            )),
            Err(QuirksError::Pattern { .. })
        ));
        assert!(matches!(
            Quirks::parse(&format!(
                "{base}[[model]]\nproduct=\"x\"\nrecovery={{mode=\"edl\", steps=[]}}\n"
            )),
            Err(QuirksError::Recovery(_))
        ));
        assert!(Quirks::parse(&format!("{base}bogus=1\n")).is_err());
    }

    #[test]
    fn every_entry_says_where_its_facts_come_from() {
        let q = Quirks::builtin();
        for m in &q.models {
            assert!(
                m.provenance.is_some(),
                "model {} has no provenance",
                m.product
            );
        }
        for u in &q.usb {
            assert!(
                u.provenance.is_some(),
                "USB ID {:04x}:{:04x} has no provenance",
                u.vid,
                u.pid
            );
        }
        let route = q.model("MF833V").and_then(|m| m.at.as_ref()).unwrap();
        assert_eq!(route.download, "AT+ZCDRUN=E");
        assert_eq!(route.diag_request(), DownloadRequest::Dload);
        assert!(route.provenance.reports_only());
        assert!(route.provenance.to_string().contains("https://"));
    }

    /// The EDL simulator is built on Unix only (it needs pseudo-terminals).
    #[cfg(unix)]
    #[test]
    fn the_simulators_chip_names_the_model_a_brick_is() {
        let q = Quirks::builtin();
        let models = q.models_for_chip(
            Some(Hwid(crate::sim::edl::VIRTUAL_HWID)),
            Some(&hex::encode(crate::sim::edl::virtual_pk_hash())),
        );
        assert_eq!(
            models
                .iter()
                .map(|m| m.product.as_str())
                .collect::<Vec<_>>(),
            ["MF833V"]
        );
        assert!(q.models_for_chip(Some(Hwid(1)), None).is_empty());
        assert!(q.models_for_chip(None, None).is_empty());
    }

    #[test]
    fn provenance_and_chip_values_are_checked() {
        let base = "[fastboot]\nfirmware_version={var=\"a\"}\nsecurity_version={var=\"b\"}\nbattery_percent={var=\"c\"}\n";
        for (entry, ok) in [
            ("provenance=\"virtual\"", true),
            ("provenance=\"hardware-verified\"", true),
            (
                "provenance=\"public reports: https://example.org/post\"",
                true,
            ),
            ("provenance=\"public reports:\"", false),
            ("provenance=\"a forum\"", false),
            ("hwid=\"0x000960e10029003e\"", true),
            ("hwid=\"000960e1\"", false),
            ("pk_hash=\"abcd\"", false),
        ] {
            let text = format!("{base}[[model]]\nproduct=\"x\"\n{entry}\n");
            assert_eq!(Quirks::parse(&text).is_ok(), ok, "{entry}");
        }
        let at = "at={battery=false, version={var=\"+CGMR\"}, download=\"AT+ZCDRUN=E\", counterparts=[], provenance=\"virtual\", diag_request=\"reboot\"}";
        assert!(matches!(
            Quirks::parse(&format!("{base}[[model]]\nproduct=\"x\"\n{at}\n")),
            Err(QuirksError::BadValue { .. })
        ));
    }

    #[test]
    fn udev_rules_are_in_sync_with_the_quirks_file() {
        let committed = include_str!("../../udev/70-flashline.rules");
        assert_eq!(
            committed,
            Quirks::builtin().udev_rules(),
            "udev/70-flashline.rules is stale: regenerate it with `flashline udev-rules > udev/70-flashline.rules`"
        );
        assert!(
            !committed.contains("MODE="),
            "access is granted by uaccess only"
        );
        // ModemManager keeps off download modes; modem ttys are granted too.
        assert!(committed.contains(
            "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"05c6\", ATTR{idProduct}==\"9008\", TAG+=\"uaccess\", ENV{ID_MM_DEVICE_IGNORE}=\"1\""
        ));
        assert!(committed.contains(
            "SUBSYSTEM==\"tty\", ATTRS{idVendor}==\"19d2\", ATTRS{idProduct}==\"1403\", TAG+=\"uaccess\"\n"
        ));
    }
}
