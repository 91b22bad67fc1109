//! Per device: the preflight checklist before anything runs, then the job's progress with
//! its own Cancel; and the Flash button, disabled with the reason while anything refuses.

use eframe::egui;
use std::time::Instant;

use eframe::egui::RichText;

use super::{badge, status_color};
use crate::device::printable;
use crate::engine::{Check, Status};
use crate::gui::state::{bytes, outcome_title, AppState, CheckState, DeviceRow, Intent, JobView};

/// Draws the checklists, the progress and the Flash button.
pub fn show(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>, now: Instant) {
    flash_button(ui, state);
    let mut cancel = Vec::new();
    let shown: Vec<&DeviceRow> = state
        .devices
        .iter()
        .filter(|d| d.selected || d.job.is_some())
        .collect();
    if shown.is_empty() {
        ui.label(RichText::new("Tick a device to see its preflight checklist.").weak());
    }
    for d in shown {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.horizontal(|ui| {
                ui.label(RichText::new(d.name()).strong().size(15.0));
                badge(ui, d.badge());
                ui.label(RichText::new(&d.address).weak());
            });
            if let Some(job) = &d.job {
                if progress(ui, job, now) {
                    cancel.push(d.key.clone());
                }
            }
            checklist(ui, d);
        });
        ui.add_space(4.0);
    }
    for key in cancel {
        out.extend(state.cancel(&key));
    }
}

fn flash_button(ui: &mut egui::Ui, state: &mut AppState) {
    let targets = state.flash_targets().map(|t| t.len());
    ui.horizontal(|ui| {
        let label = match &targets {
            Ok(1) => "Flash 1 device".to_string(),
            Ok(n) => format!("Flash {n} devices"),
            Err(_) => "Flash".to_string(),
        };
        let button = egui::Button::new(RichText::new(label).size(16.0));
        let clicked = ui.add_enabled(targets.is_ok(), button).clicked();
        if let Err(reason) = &targets {
            ui.label(RichText::new(reason).color(ui.visuals().warn_fg_color));
        } else if clicked {
            state.request_flash();
        }
    });
    ui.add_space(6.0);
}

/// Draws a job's progress; returns true when its Cancel was clicked.
fn progress(ui: &mut egui::Ui, job: &JobView, now: Instant) -> bool {
    let mut text = format!(
        "{} · {} of {}",
        job.stage_text(),
        bytes(job.done()),
        bytes(job.total)
    );
    if let Some(rate) = job.rate(now) {
        text.push_str(&format!(" · {}/s", bytes(rate as u64)));
    }
    if let Some(eta) = job.eta(now) {
        text.push_str(&format!(" · ETA {} s", eta.as_secs()));
    }
    let mut clicked = false;
    ui.horizontal(|ui| {
        ui.add(
            egui::ProgressBar::new(job.fraction())
                .desired_width((ui.available_width() - 90.0).max(120.0))
                .show_percentage(),
        );
        if job.finished.is_none() {
            let label = if job.cancel_requested {
                "Cancelling…"
            } else {
                "Cancel"
            };
            clicked = ui
                .add_enabled(!job.cancel_requested, egui::Button::new(label))
                .on_hover_text(
                    "Stops this device only. Before the first write nothing changes; during a \
                     write the partition is left half-written and the job must be run again.",
                )
                .clicked();
        }
    });
    match &job.finished {
        None => {
            ui.label(text);
        }
        Some(f) => {
            let color = match f.outcome {
                crate::engine::Outcome::Success => super::ok_color(ui),
                crate::engine::Outcome::Cancelled => ui.visuals().warn_fg_color,
                _ => ui.visuals().error_fg_color,
            };
            let mut line = outcome_title(f.outcome).to_string();
            if let Some(e) = &f.error {
                line = format!("{line}: {}", printable(e));
            }
            ui.label(RichText::new(line).color(color).strong());
            if let Some(rate) = job.rate(now) {
                ui.label(format!(
                    "{} written at {}/s",
                    bytes(job.done()),
                    bytes(rate as u64)
                ));
            }
            if let Some(path) = &f.report {
                ui.label(RichText::new(format!("Report: {}", path.display())).weak());
            }
        }
    }
    if !job.backups.is_empty() {
        ui.label(format!("Backed up: {}", job.backups.join(", ")));
    }
    clicked
}

fn checklist(ui: &mut egui::Ui, d: &DeviceRow) {
    match &d.check {
        CheckState::NotRun => {}
        CheckState::Running(_) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Running the preflight: reading the device, nothing is written…");
            });
        }
        CheckState::Failed(e) => {
            ui.label(
                RichText::new(format!("The preflight could not run: {}", printable(e)))
                    .color(ui.visuals().error_fg_color),
            );
        }
        CheckState::Done(list) => {
            let open = d.job.as_ref().is_none_or(|j| j.finished.is_some())
                || list.refusals().next().is_some();
            egui::CollapsingHeader::new("Preflight checklist")
                .id_salt(("checklist", &d.key))
                .default_open(true)
                .open(if open { None } else { Some(false) })
                .show(ui, |ui| {
                    for c in &list.checks {
                        check_line(ui, c);
                    }
                });
        }
    }
}

fn check_line(ui: &mut egui::Ui, c: &Check) {
    let mark = match c.status {
        Status::Pass => "Pass:",
        Status::Warn => "Warning:",
        Status::Refuse => "Refused:",
    };
    let color = status_color(ui, c.status);
    ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!("{mark} {}", title(&c.name)))
                .color(color)
                .strong(),
        );
        ui.label(format!(
            "device: {} · package needs: {}",
            printable(&c.actual),
            c.required
        ));
    });
    let message = printable(&c.message);
    if c.status != Status::Pass {
        ui.label(RichText::new(message).color(color));
    } else {
        ui.label(RichText::new(message).weak());
    }
}

fn title(name: &str) -> String {
    match name {
        "product" => "Product match".into(),
        "security-version" => "Security version".into(),
        "version" => "Version".into(),
        "battery" => "Battery".into(),
        "signer" => "Signer".into(),
        "backup plan" => "Backup plan".into(),
        "package-kind" => "Package kind".into(),
        "lock" => "Bootloader lock".into(),
        other => match (
            other.strip_prefix("storage:"),
            other.strip_prefix("requires:"),
        ) {
            (Some(part), _) => format!("Storage for {part}"),
            (_, Some(variable)) => format!("Required {variable}"),
            _ => other.to_string(),
        },
    }
}
