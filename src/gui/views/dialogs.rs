//! Dialogs: the confirmation before writing, the recovery wizard, settings, notices.

use eframe::egui;
use std::path::PathBuf;

use eframe::egui::RichText;

use crate::device::Mode;
use crate::gui::state::{mode_name, AppState, Badge, CheckState, Intent, PackageState, WizardStep};

/// Draws whichever dialogs are open.
pub fn show(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    confirm(ui, state, out);
    wizard(ui, state, out);
    settings(ui, state, out);
    notice(ui, state);
}

fn confirm(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(confirm) = &state.confirm else {
        return;
    };
    let mut start = false;
    let mut back = false;
    egui::Modal::new(egui::Id::unique("confirm flash")).show(ui.ctx(), |ui| {
        ui.set_max_width(620.0);
        ui.heading("Write this firmware?");
        ui.label(format!(
            "{} will be written to {} device(s), in parallel:",
            confirm.package,
            confirm.devices.len()
        ));
        egui::ScrollArea::vertical()
            .max_height(360.0)
            .show(ui, |ui| {
                for (_, name, lines) in &confirm.devices {
                    ui.label(RichText::new(name).strong());
                    for line in lines {
                        ui.label(format!("    {line}"));
                    }
                }
            });
        ui.label(
            RichText::new(
                "Keep the devices connected until each one says Done. A failure stays on its \
                 own device; the others carry on.",
            )
            .weak(),
        );
        ui.horizontal(|ui| {
            start = ui.button("Start flashing").clicked();
            back = ui.button("Back").clicked();
        });
    });
    if start {
        out.extend(state.confirm_flash());
    } else if back {
        state.confirm = None;
    }
}

fn wizard(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    let Some(wizard) = state.wizard.clone() else {
        return;
    };
    let mut open = true;
    let mut next = None;
    let mut recover = None;
    let mut flash = false;
    let mut use_package = None;
    let mut doctor = false;
    egui::Window::new("Recovery wizard")
        .open(&mut open)
        .default_width(520.0)
        .collapsible(false)
        .show(ui.ctx(), |ui| match &wizard.step {
            WizardStep::Model => {
                ui.label("Which model is it? The steps come from flashline's quirks file.");
                for (i, g) in state.guides.iter().enumerate() {
                    let label = format!("{} — recovered in {} mode", g.name, mode_name(g.mode));
                    if ui
                        .selectable_label(wizard.guide == Some(i), label)
                        .clicked()
                    {
                        next = Some((Some(i), WizardStep::Guide));
                    }
                }
            }
            WizardStep::Guide => {
                let Some(g) = wizard.guide.and_then(|i| state.guides.get(i)) else {
                    return;
                };
                ui.heading(&g.name);
                ui.label(format!(
                    "Bring it into {} mode, step by step:",
                    mode_name(g.mode)
                ));
                for (n, step) in g.steps.iter().enumerate() {
                    ui.label(format!("{}. {step}", n + 1));
                }
                ui.horizontal(|ui| {
                    if ui.button("Done: wait for the device").clicked() {
                        next = Some((wizard.guide, WizardStep::Waiting));
                    }
                    if ui.button("Back").clicked() {
                        next = Some((None, WizardStep::Model));
                    }
                });
            }
            WizardStep::Waiting => {
                let mode = wizard
                    .guide
                    .and_then(|i| state.guides.get(i))
                    .map_or("the right", |g| mode_name(g.mode));
                match state.wizard_candidate() {
                    Some(d) => {
                        ui.label(format!(
                            "Found {} in {mode} mode at {}.",
                            d.name(),
                            d.address
                        ));
                        if ui.button("Recover this device").clicked() {
                            recover = Some(d.key.clone());
                        }
                    }
                    None => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label(format!("Waiting for a device in {mode} mode…"));
                        });
                        ui.label(
                            "If nothing appears within a minute, try another USB cable and a \
                             port directly on the computer, then repeat the steps.",
                        );
                        ui.horizontal(|ui| {
                            if ui.button("Back to the steps").clicked() {
                                next = Some((wizard.guide, WizardStep::Guide));
                            }
                            if ui
                                .button("Still not seen? Run the connection doctor")
                                .clicked()
                            {
                                doctor = true;
                            }
                        });
                    }
                }
            }
            WizardStep::Recover(key) => {
                let Some(d) = state.device(key) else {
                    ui.label("The device is gone. Plug it in again and repeat the steps.");
                    return;
                };
                ui.label(format!("Recovering {} at {}.", d.name(), d.address));
                let offer = state.recovery_offer(key);
                let offered = offer.as_ref().map_or(&[][..], |o| &o.packages[..]);
                let open = match &state.package {
                    PackageState::Ready(card) => Some(card),
                    _ => None,
                };
                let fits = open.is_some_and(|c| offered.iter().any(|e| e.path == c.path));
                match open {
                    Some(card) if fits => {
                        ui.label(format!(
                            "Package: {} {} (fits {})",
                            card.name,
                            card.version,
                            card.targets.join(", ")
                        ));
                    }
                    Some(card)
                        if !card.qualcomm
                            && matches!(d.mode, Mode::Edl | Mode::Diag | Mode::Modem) =>
                    {
                        ui.colored_label(
                            ui.visuals().warn_fg_color,
                            format!(
                                "The open package, {}, is a fastboot package; this device \
                                 needs a Qualcomm flat build.",
                                card.name
                            ),
                        );
                    }
                    Some(card) => {
                        ui.colored_label(
                            ui.visuals().warn_fg_color,
                            format!(
                                "The open package, {} (fits {}), is not one made for this \
                                 device.",
                                card.name,
                                card.targets.join(", ")
                            ),
                        );
                    }
                    None => {}
                }
                if !fits {
                    let offer_text = match &offer {
                        Some(o) if o.by_model => "Packages made for this model:",
                        Some(o) if !o.packages.is_empty() => {
                            "The device cannot say its model; packages of its kind:"
                        }
                        _ => "No package for this device is open or in the package folder.",
                    };
                    ui.label(offer_text);
                    for entry in offered {
                        let label = format!("Use {} {}", entry.name, entry.version);
                        if ui
                            .button(label)
                            .on_hover_text(entry.path.display().to_string())
                            .clicked()
                        {
                            use_package = Some(entry.path.clone());
                        }
                    }
                    if ui.button("Open package…").clicked() {
                        out.push(Intent::PickPackage);
                    }
                    return;
                }
                match (&d.check, d.badge()) {
                    (_, Badge::Flashing) => {
                        let job = d.job.as_ref();
                        ui.add(
                            egui::ProgressBar::new(job.map_or(0.0, |j| j.fraction()))
                                .show_percentage()
                                .text(job.map_or(String::new(), |j| j.stage_text())),
                        );
                    }
                    (_, Badge::Done) => {
                        ui.label(
                            RichText::new("Recovered. The device restarts into its new firmware.")
                                .color(super::ok_color(ui)),
                        );
                    }
                    (_, Badge::Failed | Badge::Cancelled) => {
                        let error = d
                            .job
                            .as_ref()
                            .and_then(|j| j.finished.as_ref())
                            .and_then(|f| f.error.clone())
                            .unwrap_or_default();
                        ui.colored_label(ui.visuals().error_fg_color, error);
                    }
                    (CheckState::Running(_), _) => {
                        ui.horizontal(|ui| {
                            ui.spinner();
                            ui.label("Running the preflight…");
                        });
                    }
                    (CheckState::Done(_) | CheckState::Failed(_), _) => {
                        match state.flash_targets() {
                            Ok(_) => {
                                ui.label(
                                    "The preflight passed; see the checklist in the main window.",
                                );
                                flash = ui.button("Recover now").clicked();
                            }
                            Err(reason) => {
                                ui.colored_label(ui.visuals().error_fg_color, reason);
                            }
                        }
                    }
                    (CheckState::NotRun, _) => {}
                }
            }
        });
    if let Some((guide, step)) = next {
        if let Some(w) = &mut state.wizard {
            if guide.is_some() || step == WizardStep::Model {
                w.guide = guide;
            }
            w.step = step;
        }
    }
    if let Some(key) = recover {
        state.wizard_recover(&key);
    }
    if let Some(path) = use_package {
        out.push(state.open_package(path));
    }
    if flash {
        state.request_flash();
    }
    if doctor {
        out.push(state.doctor.open());
    }
    if !open {
        state.wizard = None;
    }
}

fn settings(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    if !state.settings_open {
        return;
    }
    let mut open = true;
    let mut apply = false;
    egui::Window::new("Settings")
        .open(&mut open)
        .collapsible(false)
        .show(ui.ctx(), |ui| {
            egui::Grid::new("settings").num_columns(2).show(ui, |ui| {
                path_field(ui, "Trust folder", &mut state.settings.trust_dir);
                path_field(ui, "Report folder", &mut state.settings.reports_dir);
            });
            ui.checkbox(
                &mut state.settings.disable_super_optimization,
                "Disable super optimization: write logical partitions from fastbootd",
            )
            .on_hover_text(
                "By default a phone with dynamic partitions gets its whole super image \
                 built here and flashed by its bootloader in one pass, as Google's fastboot \
                 does (--disable-super-optimization in the CLI).",
            );
            ui.label(
                RichText::new(
                    "The trust folder holds the publishers' .pub keys; a package signed by any \
                     other key is refused.",
                )
                .weak(),
            );
            apply = ui.button("Apply").clicked();
        });
    if apply {
        out.push(Intent::SettingsChanged);
        state.settings_open = false;
    }
    if !open {
        state.settings_open = false;
    }
}

fn path_field(ui: &mut egui::Ui, name: &str, path: &mut PathBuf) {
    ui.label(name);
    let mut text = path.display().to_string();
    if ui
        .add(egui::TextEdit::singleline(&mut text).desired_width(380.0))
        .changed()
    {
        *path = PathBuf::from(text);
    }
    ui.end_row();
}

fn notice(ui: &mut egui::Ui, state: &mut AppState) {
    let Some(text) = state.notice.clone() else {
        return;
    };
    let mut dismissed = false;
    egui::Window::new("Notice")
        .collapsible(false)
        .show(ui.ctx(), |ui| {
            ui.label(text);
            dismissed = ui.button("OK").clicked();
        });
    if dismissed {
        state.notice = None;
    }
}
