//! The Flash button: which devices it would flash or why it is disabled, the confirmation
//! before a job, and starting and cancelling jobs.

use super::{bytes, writes_super, AppState, CheckState, Confirm, DeviceRow, Intent, JobView};
use super::{Level, PackageState};

impl AppState {
    /// Why the Flash button is disabled, or the devices it would flash.
    pub fn flash_targets(&self) -> Result<Vec<&DeviceRow>, String> {
        match &self.package {
            PackageState::None => return Err("Open a package first.".into()),
            PackageState::Verifying(_) => return Err("The package is being verified.".into()),
            PackageState::Refused { reason, .. } => {
                return Err(format!("The package is refused: {reason}"))
            }
            PackageState::Ready(_) => {}
        }
        let selected: Vec<&DeviceRow> = self.devices.iter().filter(|d| d.selected).collect();
        if selected.is_empty() {
            return Err("Tick at least one device.".into());
        }
        for d in &selected {
            if d.busy() {
                return Err(format!("{} is still flashing.", d.name()));
            }
            match &d.check {
                CheckState::Done(list) => {
                    if let Some(refusal) = list.refusals().next() {
                        return Err(format!(
                            "Preflight refused {}: {}",
                            d.name(),
                            refusal.message
                        ));
                    }
                }
                CheckState::Failed(e) => {
                    return Err(format!("Preflight could not check {}: {e}", d.name()))
                }
                CheckState::NotRun | CheckState::Running(_) => {
                    return Err(format!("Preflight of {} is still running.", d.name()))
                }
            }
        }
        Ok(selected)
    }

    /// The Flash button was clicked: show what will be written.
    pub fn request_flash(&mut self) {
        let Ok(targets) = self.flash_targets() else {
            return;
        };
        let PackageState::Ready(card) = &self.package else {
            return;
        };
        let devices = targets
            .iter()
            .map(|d| {
                let mut lines: Vec<String> = match &d.check {
                    CheckState::Done(list) if !list.writes.is_empty() => list
                        .writes
                        .iter()
                        .map(|w| {
                            let live = if w.live {
                                ", written live: it has no slots, so no other slot keeps its old content"
                            } else {
                                ""
                            };
                            format!("{} to {} ({}){live}", w.partition, w.target, bytes(w.bytes))
                        })
                        .collect(),
                    _ => card.writes.clone(),
                };
                if let CheckState::Done(list) = &d.check {
                    if let Some(slot) = &list.activate_slot {
                        let live = if list.writes.iter().any(|w| w.live) {
                            ", except for the partitions written live"
                        } else {
                            ""
                        };
                        lines.push(if writes_super(list) {
                            format!(
                                "slot {slot} becomes active before fastbootd writes super, once \
                                 every other image is verified; until then the phone boots its \
                                 old slot{live}"
                            )
                        } else {
                            format!(
                                "then slot {slot} becomes active, after every image is verified; \
                                 until then the phone boots its old, intact slot{live}"
                            )
                        });
                    }
                    if let Some(plan) = list.checks.iter().find(|c| c.name == "backup plan") {
                        lines.push(format!("backup: {}", plan.message));
                    }
                }
                (d.target(), format!("{} at {}", d.name(), d.address), lines)
            })
            .collect();
        self.confirm = Some(Confirm {
            devices,
            package: format!("{} {}", card.name, card.version),
        });
    }

    /// The confirmation was accepted: the jobs start.
    pub fn confirm_flash(&mut self) -> Option<Intent> {
        let confirm = self.confirm.take()?;
        let PackageState::Ready(card) = &self.package else {
            return None;
        };
        let package = card.path.clone();
        let mut targets = Vec::new();
        for (target, _, _) in confirm.devices {
            if let Some(row) = self.device_mut(&target.key) {
                row.job = Some(JobView::new());
                targets.push(row.target());
            }
        }
        let text = format!(
            "flashing {} onto {} device(s)",
            confirm.package,
            targets.len()
        );
        self.log(None, Level::Info, text);
        Some(Intent::Flash { targets, package })
    }

    /// Cancel was clicked on a device.
    pub fn cancel(&mut self, key: &str) -> Option<Intent> {
        let job = self.device_mut(key)?.job.as_mut()?;
        if job.finished.is_some() || job.cancel_requested {
            return None;
        }
        job.cancel_requested = true;
        self.log(Some(key), Level::Warn, "cancel requested");
        Some(Intent::Cancel(key.to_string()))
    }
}
