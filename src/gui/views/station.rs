//! The Station view: one tile per slot with a big colour, the halt banner and the resume
//! dialog, and the controls that start and stop the station.

use std::path::PathBuf;
use std::time::Instant;

use eframe::egui::{self, Color32, RichText};

use crate::gui::station::{ResumeForm, StationIntent, StationState};
use crate::station::{Slot, SlotStatus, Threshold};

/// Width of a slot tile.
const TILE_WIDTH: f32 = 280.0;
/// Space inside a tile's edge.
const TILE_MARGIN: f32 = 10.0;
/// Least height of a slot tile, so a row of tiles lines up.
const TILE_HEIGHT: f32 = 170.0;

/// Draws the Station view. `package` is the package the card shows, if verified.
pub fn show(
    ui: &mut egui::Ui,
    station: &mut StationState,
    package: Option<PathBuf>,
    out: &mut Vec<StationIntent>,
    now: Instant,
) {
    controls(ui, station, package, out);
    if station.fleet_page {
        ui.separator();
        super::fleet::show(ui, station, out);
        return;
    }
    if let Some(halt) = station.board.halted.clone() {
        banner(ui, station, &halt, out);
    } else if station.running && !station.board.canaries_passed {
        ui.label(
            RichText::new(format!(
                "Waiting for canaries: the first {} devices are flashed, rebooted and checked before the others",
                station.board.canaries
            ))
            .strong()
            .color(ui.visuals().warn_fg_color),
        );
    }
    ui.separator();
    let slots: Vec<Slot> = station.board.slots.values().cloned().collect();
    if slots.is_empty() {
        ui.label(if station.running {
            "Plug devices in: each one is identified, checked and flashed on its own."
        } else {
            "Start the station, then plug devices in."
        });
    }
    egui::ScrollArea::vertical().show(ui, |ui| {
        // Rows of as many tiles as fit side by side.
        let step = TILE_WIDTH + 2.0 * TILE_MARGIN + ui.spacing().item_spacing.x;
        let per_row = ((ui.available_width() / step).floor() as usize).max(1);
        for row in slots.chunks(per_row) {
            ui.horizontal_top(|ui| {
                for slot in row {
                    tile(ui, station, slot, out, now);
                }
            });
        }
    });
    resume_dialog(ui, station, out);
}

fn controls(
    ui: &mut egui::Ui,
    station: &mut StationState,
    package: Option<PathBuf>,
    out: &mut Vec<StationIntent>,
) {
    ui.horizontal_wrapped(|ui| {
        ui.heading("Station");
        ui.separator();
        if station.running {
            if ui.button("Stop station").clicked() {
                out.push(StationIntent::Stop);
            }
            if let Some(dir) = &station.board.dir {
                ui.label(format!("Batch {}", file_name(dir)))
                    .on_hover_text(dir.display().to_string());
            }
        } else {
            ui.label("Canaries");
            ui.add(egui::DragValue::new(&mut station.canaries).range(0..=20));
            ui.label("Halt at failures (N/M)");
            ui.add(egui::TextEdit::singleline(&mut station.max_failures).desired_width(50.0));
            let threshold = station.max_failures.parse::<Threshold>();
            let start = ui.add_enabled(
                package.is_some() && threshold.is_ok(),
                egui::Button::new("Start station"),
            );
            if let Err(e) = &threshold {
                ui.colored_label(ui.visuals().error_fg_color, e);
            } else if package.is_none() {
                ui.label("Open a package first: every device gets it.");
            }
            if let (true, Some(package), Ok(max_failures)) = (start.clicked(), package, threshold) {
                out.push(StationIntent::Start {
                    packages: vec![package],
                    canaries: station.canaries,
                    max_failures,
                });
            }
        }
        ui.toggle_value(&mut station.fleet_page, "Fleet");
        if ui.checkbox(&mut station.sound, "Sound").changed() {
            out.push(StationIntent::Sound(station.sound));
        }
    });
    if let Some(error) = &station.error {
        ui.colored_label(ui.visuals().error_fg_color, error);
    }
}

fn banner(
    ui: &mut egui::Ui,
    station: &mut StationState,
    halt: &crate::station::HaltRecord,
    out: &mut Vec<StationIntent>,
) {
    egui::Frame::new()
        .fill(Color32::from_rgb(170, 20, 20))
        .inner_margin(10.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(
                RichText::new("Batch halted: no new flash starts")
                    .size(22.0)
                    .strong()
                    .color(Color32::WHITE),
            );
            for reason in &halt.reasons {
                ui.label(RichText::new(reason).color(Color32::WHITE));
            }
            for report in &halt.reports {
                if ui
                    .link(
                        RichText::new(format!("Report: {}", file_name(report)))
                            .color(Color32::WHITE),
                    )
                    .clicked()
                {
                    if let Some(folder) = report.parent() {
                        out.push(StationIntent::OpenFolder(folder.to_path_buf()));
                    }
                }
            }
            if ui.button("Resume…").clicked() {
                station.resume = Some(ResumeForm::default());
            }
        });
}

fn resume_dialog(ui: &mut egui::Ui, station: &mut StationState, out: &mut Vec<StationIntent>) {
    let Some(form) = station.resume.as_mut() else {
        return;
    };
    let mut close = false;
    egui::Modal::new(egui::Id::unique("resume station")).show(ui.ctx(), |ui| {
        ui.heading("Resume the batch?");
        ui.label(
            "Flashing starts again on every waiting slot. Say who you are and why it is safe.",
        );
        ui.horizontal(|ui| {
            let label = ui.label("Who");
            ui.add(egui::TextEdit::singleline(&mut form.by).desired_width(260.0))
                .labelled_by(label.id);
        });
        ui.horizontal(|ui| {
            let label = ui.label("Why");
            ui.add(egui::TextEdit::singleline(&mut form.reason).desired_width(360.0))
                .labelled_by(label.id);
        });
        ui.horizontal(|ui| {
            let ready = !form.by.trim().is_empty() && !form.reason.trim().is_empty();
            if ui
                .add_enabled(ready, egui::Button::new("Resume batch"))
                .clicked()
            {
                if let Some(batch) = station.board.dir.clone() {
                    out.push(StationIntent::Resume {
                        batch,
                        by: form.by.trim().to_string(),
                        reason: form.reason.trim().to_string(),
                    });
                }
                close = true;
            }
            if ui.button("Cancel").clicked() {
                close = true;
            }
        });
    });
    if close {
        station.resume = None;
    }
}

/// A slot's colour: green done, red failed, amber refused or waiting, blue working.
fn colour(status: SlotStatus) -> Color32 {
    match status {
        SlotStatus::Empty => Color32::from_gray(90),
        SlotStatus::Identifying | SlotStatus::Flashing | SlotStatus::Verifying => {
            Color32::from_rgb(30, 90, 170)
        }
        SlotStatus::Waiting => Color32::from_rgb(150, 110, 20),
        SlotStatus::Done | SlotStatus::Returned => Color32::from_rgb(25, 130, 50),
        SlotStatus::Failed => Color32::from_rgb(180, 25, 25),
        SlotStatus::Refused => Color32::from_rgb(190, 90, 10),
    }
}

fn tile(
    ui: &mut egui::Ui,
    station: &mut StationState,
    slot: &Slot,
    out: &mut Vec<StationIntent>,
    now: Instant,
) {
    let mut fill = colour(slot.status);
    if station.blink(&slot.key, now) == Some(false) {
        fill = fill.gamma_multiply(0.45);
    }
    if station.blink(&slot.key, now).is_some() {
        ui.ctx().request_repaint();
    }
    let label = station.label_of(&slot.key);
    egui::Frame::new()
        .fill(fill)
        .inner_margin(TILE_MARGIN)
        .corner_radius(8.0)
        .show(ui, |ui| {
            ui.set_width(TILE_WIDTH);
            ui.set_min_height(TILE_HEIGHT);
            ui.vertical(|ui| tile_body(ui, station, slot, label, out));
        });
}

fn tile_body(
    ui: &mut egui::Ui,
    station: &mut StationState,
    slot: &Slot,
    label: Option<String>,
    out: &mut Vec<StationIntent>,
) {
    ui.visuals_mut().override_text_color = Some(Color32::WHITE);
    name_line(ui, station, slot, label, out);
    ui.label(RichText::new(status_text(slot)).size(26.0).strong());
    ui.label(format!(
        "{} · {}",
        slot.model.as_deref().unwrap_or("unknown model"),
        slot.serial.as_deref().unwrap_or("no serial")
    ));
    if slot.before.is_some() || slot.after.is_some() {
        ui.label(format!(
            "{} -> {}",
            slot.before.as_deref().unwrap_or("?"),
            slot.after.as_deref().unwrap_or("…")
        ));
    }
    if let (Some((done, total)), SlotStatus::Flashing) = (slot.progress, slot.status) {
        let fraction = if total == 0 {
            0.0
        } else {
            done as f32 / total as f32
        };
        ui.add(egui::ProgressBar::new(fraction).show_percentage());
    }
    if let Some(message) = &slot.message {
        ui.label(message);
    }
    if let Some(at) = &slot.finished_at {
        ui.small(format!("Finished {at}"));
    }
}

fn name_line(
    ui: &mut egui::Ui,
    station: &mut StationState,
    slot: &Slot,
    label: Option<String>,
    out: &mut Vec<StationIntent>,
) {
    let renaming = station
        .renaming
        .as_ref()
        .is_some_and(|(key, _)| *key == slot.key);
    ui.horizontal(|ui| {
        if renaming {
            let mut save = false;
            if let Some((_, text)) = station.renaming.as_mut() {
                let name = ui.label("Label");
                let edit = ui
                    .add(egui::TextEdit::singleline(text).desired_width(150.0))
                    .labelled_by(name.id);
                save = edit.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            }
            if ui.button("Save label").clicked() || save {
                if let Some((key, text)) = station.renaming.take() {
                    station.set_label(&key, &text);
                    out.push(StationIntent::Label {
                        slot: key,
                        label: text,
                    });
                }
            }
        } else {
            ui.label(RichText::new(label.as_deref().unwrap_or(&slot.key)).strong());
        }
    });
    if !renaming
        && ui
            .small_button(format!("Rename {}", slot.key))
            .on_hover_text("Give this USB port a name, kept in the station settings")
            .clicked()
    {
        station.renaming = Some((slot.key.clone(), label.unwrap_or_default()));
    }
    if slot.canary {
        ui.label(RichText::new("CANARY").strong());
    }
}

fn status_text(slot: &Slot) -> String {
    match slot.status {
        SlotStatus::Empty => "Empty".into(),
        SlotStatus::Identifying => "Identifying".into(),
        SlotStatus::Waiting => "Waiting".into(),
        SlotStatus::Flashing => "Flashing".into(),
        SlotStatus::Verifying => "Checking".into(),
        SlotStatus::Done => "Done".into(),
        SlotStatus::Failed => "Failed".into(),
        SlotStatus::Refused => "Refused".into(),
        SlotStatus::Returned => "Back, not reflashed".into(),
    }
}

/// The last part of a path, for a label; the whole path is in its hover text or folder.
fn file_name(path: &std::path::Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
