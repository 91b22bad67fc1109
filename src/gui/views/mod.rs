//! The views: each draws part of the [`AppState`], changes only view-level fields
//! (ticks, tabs, open dialogs) through the state's methods, and pushes [`Intent`]s for
//! everything else.

mod devices;
mod dialogs;
mod doctor;
mod fleet;
mod jobs;
mod log;
mod package;
#[cfg(feature = "fleet")]
mod repo;
mod station;

use eframe::egui;
use std::time::Instant;

use eframe::egui::{Color32, RichText};

use super::state::{AppState, Badge, Intent, PackageState};
use crate::engine::Status;

/// Draws the whole window.
pub fn show(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>, now: Instant) {
    egui::Panel::top("toolbar").show(ui, |ui| toolbar(ui, state, out));
    egui::Panel::bottom("log")
        .resizable(true)
        .default_size(190.0)
        .show(ui, |ui| log::show(ui, state, out));
    if state.station.open {
        egui::CentralPanel::default().show(ui, |ui| {
            let package = match &state.package {
                PackageState::Ready(card) => Some(card.path.clone()),
                _ => None,
            };
            let mut asked = Vec::new();
            station::show(ui, &mut state.station, package, &mut asked, now);
            out.extend(asked.into_iter().map(Intent::Station));
        });
        dialogs::show(ui, state, out);
        return;
    }
    egui::Panel::left("devices")
        .resizable(true)
        .default_size(560.0)
        .show(ui, |ui| devices::show(ui, state));
    egui::CentralPanel::default().show(ui, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            package::show(ui, state);
            #[cfg(feature = "fleet")]
            repo::show(ui, &mut state.repo, out);
            ui.separator();
            jobs::show(ui, state, out, now);
        });
    });
    dialogs::show(ui, state, out);
    doctor::show(ui, state, out);
    if ui.ctx().input(|i| !i.raw.hovered_files.is_empty()) {
        drop_hint(ui);
    }
}

fn toolbar(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.horizontal_wrapped(|ui| {
        ui.heading("flashline");
        ui.separator();
        if ui.button("Open package…").clicked() {
            out.push(Intent::PickPackage);
        }
        for path in state.quick_packages.clone() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ui
                .button(name)
                .on_hover_text("open this demo package")
                .clicked()
            {
                out.push(state.open_package(path));
            }
        }
        ui.separator();
        if ui.button("Recovery wizard…").clicked() {
            state.open_wizard(None);
        }
        if ui
            .button("Device not seen?")
            .on_hover_text("the connection doctor: udev rules, permissions, ModemManager, drivers")
            .clicked()
        {
            out.push(state.doctor.open());
        }
        if ui.button("Settings…").clicked() {
            state.settings_open = true;
        }
        ui.separator();
        let station = if state.station.open {
            "Devices"
        } else {
            "Station"
        };
        if ui.button(station).clicked() {
            state.station.open = !state.station.open;
        }
    });
}

fn drop_hint(ui: &mut egui::Ui) {
    let rect = ui.ctx().content_rect();
    let painter = ui.ctx().layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("drop hint"),
    ));
    painter.rect_filled(rect, 0.0, Color32::from_black_alpha(160));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop a firmware package to open it",
        egui::FontId::proportional(24.0),
        Color32::WHITE,
    );
}

/// The colour of a check's status.
fn status_color(ui: &egui::Ui, status: Status) -> Color32 {
    match status {
        Status::Pass => ok_color(ui),
        Status::Warn => ui.visuals().warn_fg_color,
        Status::Refuse => ui.visuals().error_fg_color,
    }
}

fn ok_color(ui: &egui::Ui) -> Color32 {
    if ui.visuals().dark_mode {
        Color32::from_rgb(110, 200, 120)
    } else {
        Color32::from_rgb(20, 120, 40)
    }
}

/// A row's state badge.
fn badge(ui: &mut egui::Ui, badge: Badge) {
    let (text, color) = match badge {
        Badge::Idle => ("Idle", ui.visuals().weak_text_color()),
        Badge::Checking => ("Checking", ui.visuals().text_color()),
        Badge::Ready => ("Ready", ok_color(ui)),
        Badge::Refused => ("Refused", ui.visuals().error_fg_color),
        Badge::Flashing => ("Flashing", ui.visuals().hyperlink_color),
        Badge::Done => ("Done", ok_color(ui)),
        Badge::Failed => ("Failed", ui.visuals().error_fg_color),
        Badge::Cancelled => ("Cancelled", ui.visuals().warn_fg_color),
        Badge::Bricked => ("Bricked?", ui.visuals().warn_fg_color),
        Badge::Away => ("Re-enumerating", ui.visuals().weak_text_color()),
    };
    ui.label(RichText::new(text).color(color).strong());
}
