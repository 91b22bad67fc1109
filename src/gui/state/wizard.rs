//! The recovery wizard: guides per model, its pages, and the AppState methods that drive it.

use super::{AppState, DeviceKey, DeviceRow, Intent, PackageState};
use crate::device::Mode;
use crate::gui::catalog::{CatalogEntry, Offer};

/// One model's way into its recovery mode, from the quirks file.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryGuide {
    /// Product name (what the device reports).
    pub product: String,
    /// Readable name.
    pub name: String,
    /// The mode to bring it into.
    pub mode: Mode,
    /// The steps.
    pub steps: Vec<String>,
}

/// The recovery wizard.
#[derive(Debug, Clone, PartialEq)]
pub struct Wizard {
    /// Index into [`AppState::guides`].
    pub guide: Option<usize>,
    /// Where the wizard is.
    pub step: WizardStep,
}

/// The wizard's pages.
#[derive(Debug, Clone, PartialEq)]
pub enum WizardStep {
    /// Pick the model.
    Model,
    /// Follow the steps.
    Guide,
    /// Wait for a device in the guide's mode.
    Waiting,
    /// A device in the right mode is there: check it and recover it.
    Recover(DeviceKey),
}

impl AppState {
    /// Opens the recovery wizard, at the device if one was named.
    pub fn open_wizard(&mut self, device: Option<&str>) {
        let step = match device {
            Some(key) => WizardStep::Recover(key.to_string()),
            None => WizardStep::Model,
        };
        self.wizard = Some(Wizard { guide: None, step });
    }

    /// The wizard's waiting page: an idle device in the guide's mode, if any.
    pub fn wizard_candidate(&self) -> Option<&DeviceRow> {
        let wizard = self.wizard.as_ref()?;
        let guide = self.guides.get(wizard.guide?)?;
        let waiting = |d: &&DeviceRow| d.present && d.mode == guide.mode && !d.busy();
        // A device that has not been flashed this session is the one just brought in.
        self.devices
            .iter()
            .filter(waiting)
            .find(|d| d.job.is_none())
            .or_else(|| self.devices.iter().find(waiting))
    }

    /// Moves the wizard on to recovering `key`: only it is ticked, so its preflight runs.
    pub fn wizard_recover(&mut self, key: &str) {
        for d in &mut self.devices {
            d.selected = d.key == key;
        }
        if let Some(w) = &mut self.wizard {
            w.step = WizardStep::Recover(key.to_string());
        }
        self.catalog_asked = false;
    }

    /// Asks once for the packages the wizard may offer, when it shows a device to recover:
    /// the one-click packages, the open one and those in the last package folder.
    pub fn pending_catalog(&mut self) -> Option<Intent> {
        let recovering = matches!(
            self.wizard.as_ref().map(|w| &w.step),
            Some(WizardStep::Recover(_))
        );
        if !recovering || self.catalog_asked {
            return None;
        }
        self.catalog_asked = true;
        let mut files = self.quick_packages.clone();
        if let PackageState::Ready(card) = &self.package {
            files.push(card.path.clone());
        }
        Some(Intent::ListPackages {
            files,
            dirs: self.settings.last_package_dir.iter().cloned().collect(),
        })
    }

    /// The packages that fit the device `key` for recovery. Its model is the one the
    /// wizard's guide names, else what the device said; see [`crate::gui::catalog::offer`].
    /// The open package is always among the candidates, found or not.
    pub fn recovery_offer(&self, key: &str) -> Option<Offer> {
        let d = self.device(key)?;
        let guide = self.wizard.as_ref().and_then(|w| w.guide);
        let model = guide
            .and_then(|i| self.guides.get(i))
            .map(|g| g.product.as_str())
            .or(d.model.as_deref());
        let mut candidates = self.catalog.clone();
        if let PackageState::Ready(card) = &self.package {
            if !candidates.iter().any(|e| e.path == card.path) {
                // Not listed yet: what its card says (it declares no chip to compare).
                candidates.push(CatalogEntry {
                    path: card.path.clone(),
                    name: card.name.clone(),
                    version: card.version.clone(),
                    targets: card.targets.clone(),
                    qualcomm: card.qualcomm,
                    zxic: card.zxic,
                    unisoc: card.unisoc,
                    hwid: None,
                    pk_hash: None,
                });
            }
        }
        Some(crate::gui::catalog::offer(
            &candidates,
            d.mode,
            model,
            d.chip.as_ref(),
        ))
    }
}
