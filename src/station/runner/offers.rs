//! A fleet member's devices between identification and their job: each waits on its slot
//! ("no deployment") and its fleet is asked again at the interval the fleet names, until a
//! rollout offers it a package. The package is then checked with the station's trust
//! store like any other, and the device goes to the [`Machine`](super::Machine), where the
//! local canary and kill switch still decide when it is flashed.

use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{choose, lock, Identified, Input, Pending, Runner};
use crate::device::discovery::Found;
use crate::package::{Package, TrustStore, VerifiedPackage};
use crate::station::fleet::{FleetDevice, FleetLink, FleetStatus, Offer, Ticket};
use crate::station::machine::Identity;

/// What the slot shows while its fleet is first asked.
const ASKING: &str = "asking the fleet";
/// When to ask again about a device whose offer was withdrawn right before its write.
const AFTER_SKIP: Duration = Duration::from_secs(1);
/// When to ask again after the package offered failed the station's own check (the
/// action was closed as failed; a new one takes the server a while).
const AFTER_REJECT: Duration = Duration::from_secs(5);

/// An identified device waiting for an offer.
pub(super) struct Unassigned {
    pub(super) found: Found,
    identity: Identity,
    product: Option<String>,
    imei: Option<String>,
    /// When to ask next.
    next: Instant,
    /// Whether a question is on its way.
    asking: bool,
}

/// The fleet's answer about one device, worked out off the station's thread.
pub(super) enum Answer {
    /// A package that passed the station's own check and is made for this device.
    Package {
        ticket: Ticket,
        path: PathBuf,
        package: Arc<VerifiedPackage>,
    },
    /// Nothing to flash now: what the slot shows, and when to ask again.
    Nothing { why: String, retry: Duration },
}

impl Runner {
    /// A fleet member's device was identified: it had its job already, or it waits for an
    /// offer (asked at once: a device is polled while the technician is still at it).
    pub(super) fn identified_for_fleet(
        &mut self,
        slot: String,
        found: Identified,
    ) -> Vec<super::Action> {
        if self.machine.has_had_job(&found.identity.key) {
            // Shown as back after its job, never flashed twice.
            return self
                .machine
                .identified(&slot, found.identity, Ok(String::new()));
        }
        self.machine
            .unassigned(&slot, &found.identity, ASKING.to_string());
        self.unassigned.insert(
            slot,
            Unassigned {
                found: found.found,
                identity: found.identity,
                product: found.product,
                imei: found.imei,
                next: Instant::now(),
                asking: false,
            },
        );
        Vec::new()
    }

    /// Asks the fleet about every waiting device whose time has come.
    pub(super) fn ask_fleet(&mut self, tx: &Sender<Input>) {
        let Some(fleet) = self.fleet.clone() else {
            return;
        };
        let now = Instant::now();
        let mut due = Vec::new();
        for (slot, waiting) in &mut self.unassigned {
            if waiting.asking || waiting.next > now {
                continue;
            }
            waiting.asking = true;
            let device = FleetDevice {
                slot: slot.clone(),
                label: self.machine.slots().get(slot).and_then(|s| s.label.clone()),
                serial: waiting
                    .identity
                    .serial
                    .clone()
                    .or_else(|| Some(waiting.identity.key.clone())),
                imei: waiting.imei.clone(),
                model: waiting.identity.model.clone(),
                version: waiting.identity.version.clone(),
            };
            let fits = (waiting.found.mode, waiting.product.clone());
            due.push((slot.clone(), waiting.found.address.clone(), device, fits));
        }
        for (slot, address, device, (mode, product)) in due {
            let (fleet, trust) = (Arc::clone(&fleet), self.config.trust.clone());
            self.spawn(tx, move |tx| {
                let answer = ask(fleet.as_ref(), &trust, &device, |package| {
                    choose(std::slice::from_ref(package), mode, product.as_deref()).map(|_| ())
                });
                let _ = tx.send(Input::Offered {
                    slot,
                    address,
                    answer,
                });
            });
        }
    }

    /// The fleet answered about the device on `slot`.
    pub(super) fn offered(
        &mut self,
        slot: String,
        address: &str,
        answer: Answer,
    ) -> Vec<super::Action> {
        // The device may have left (or another arrived) while the fleet was asked.
        let Some(waiting) = self
            .unassigned
            .get_mut(&slot)
            .filter(|w| w.found.address == address)
        else {
            return Vec::new();
        };
        waiting.asking = false;
        match answer {
            Answer::Nothing { why, retry } => {
                waiting.next = Instant::now() + retry;
                let identity = waiting.identity.clone();
                self.machine.unassigned(&slot, &identity, why);
                Vec::new()
            }
            Answer::Package {
                ticket,
                path,
                package,
            } => {
                let Some(waiting) = self.unassigned.remove(&slot) else {
                    return Vec::new();
                };
                let expected = package.manifest().version.to_string();
                let index = self.adopt(path, package);
                self.pending.insert(
                    slot.clone(),
                    Pending {
                        found: waiting.found,
                        identity: waiting.identity.clone(),
                        product: waiting.product,
                        package: index,
                        ticket: Some(ticket),
                        imei: waiting.imei,
                    },
                );
                self.machine
                    .identified(&slot, waiting.identity, Ok(expected))
            }
        }
    }

    /// The fleet withdrew the offer for `slot` right before its write: nothing was
    /// written, and the device waits on its slot for a later offer.
    pub(super) fn skipped(&mut self, slot: String, why: String) -> Vec<super::Action> {
        tracing::info!(slot = %slot, "not flashed: {why}");
        let actions = self.machine.skipped(&slot, why);
        if let Some(pending) = self.pending.remove(&slot) {
            let still_here = lock(&self.present).contains_key(&pending.found.address);
            if still_here {
                self.unassigned.insert(
                    slot,
                    Unassigned {
                        found: pending.found,
                        identity: pending.identity,
                        product: pending.product,
                        imei: pending.imei,
                        next: Instant::now() + AFTER_SKIP,
                        asking: false,
                    },
                );
            }
        }
        actions
    }

    /// The package at `path`, as one of this batch's packages (the same file is kept once).
    fn adopt(&mut self, path: PathBuf, package: Arc<VerifiedPackage>) -> usize {
        if let Some(i) = self.config.packages.iter().position(|p| *p == path) {
            return i;
        }
        self.config.packages.push(path);
        self.packages.push(package);
        self.packages.len() - 1
    }

    /// The fleet's state, if it changed since it was last shown.
    pub(super) fn fleet_changed(&mut self) -> Option<FleetStatus> {
        let status = self.fleet.as_ref()?.status();
        if self.fleet_status.as_ref() == Some(&status) {
            return None;
        }
        self.fleet_status = Some(status.clone());
        Some(status)
    }
}

/// Asks `fleet` about `device`; a package offered is opened and verified with `trust`
/// and must be made for the device (`fits`), else the action is declined.
fn ask(
    fleet: &dyn FleetLink,
    trust: &TrustStore,
    device: &FleetDevice,
    fits: impl Fn(&Arc<VerifiedPackage>) -> Result<(), String>,
) -> Answer {
    let (ticket, path) = match fleet.offer(device) {
        Offer::Nothing { why, retry } => return Answer::Nothing { why, retry },
        Offer::Deployment { ticket, path } => (ticket, path),
    };
    let checked = Package::open(&path)
        .and_then(|p| p.verify(trust))
        .map_err(|e| e.to_string())
        .map(Arc::new)
        .and_then(|package| fits(&package).map(|()| package));
    match checked {
        Ok(package) => Answer::Package {
            ticket,
            path,
            package,
        },
        Err(why) => {
            tracing::warn!(package = %ticket.package, "package offered by the fleet refused: {why}");
            fleet.declined(&ticket, &why);
            Answer::Nothing {
                why: format!("package {} refused: {why}", ticket.package),
                retry: AFTER_REJECT,
            }
        }
    }
}
