//! The package card: what the open package is, who signed it, and whether it is trusted.

use eframe::egui;
use eframe::egui::RichText;

use crate::gui::state::{AppState, PackageCard, PackageState};

/// Draws the card.
pub fn show(ui: &mut egui::Ui, state: &AppState) {
    ui.heading("Package");
    match &state.package {
        PackageState::None => {
            ui.label("Open a firmware package (.flpkg) with “Open package…”, or drop it onto this window.");
        }
        PackageState::Verifying(path) => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!(
                    "Checking the signature and every image hash of {}…",
                    path.display()
                ));
            });
        }
        PackageState::Ready(card) => {
            ui.label(
                RichText::new(format!("Verified: {}", card.signature)).color(super::ok_color(ui)),
            );
            facts(ui, card, false);
        }
        PackageState::Refused { path, card, reason } => {
            ui.label(
                RichText::new(format!("Refused: {reason}"))
                    .color(ui.visuals().error_fg_color)
                    .strong(),
            );
            ui.label(
                "Nothing from this package will be written. Get the package again from its \
                 publisher, or add the publisher's key to the trust folder (Settings) if you \
                 trust it.",
            );
            match card {
                Some(card) => {
                    ui.label(RichText::new("What the package claims to be:").weak());
                    facts(ui, card, true);
                }
                None => {
                    ui.label(format!("File: {}", path.display()));
                }
            }
        }
    }
}

fn facts(ui: &mut egui::Ui, card: &PackageCard, with_signature: bool) {
    egui::Grid::new("package facts")
        .num_columns(2)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            let row = |ui: &mut egui::Ui, name: &str, value: String| {
                ui.label(RichText::new(name).strong());
                ui.add(egui::Label::new(value).wrap());
                ui.end_row();
            };
            row(ui, "Name", card.name.clone());
            row(ui, "Version", card.version.clone());
            row(ui, "Security version", card.security_version.to_string());
            row(ui, "Fits", card.targets.join(", "));
            row(
                ui,
                "Kind",
                if card.qualcomm {
                    "Qualcomm flat build, written through emergency download mode".into()
                } else {
                    "fastboot images".into()
                },
            );
            row(
                ui,
                "Needs battery",
                format!("at least {} %", card.min_battery_percent),
            );
            if let Some(d) = &card.description {
                row(ui, "Description", d.clone());
            }
            if with_signature {
                row(ui, "Signature", card.signature.clone());
            }
            row(ui, "File", card.path.display().to_string());
        });
    egui::CollapsingHeader::new("What it writes")
        .default_open(card.writes.len() <= 6)
        .show(ui, |ui| {
            for line in &card.writes {
                ui.label(line);
            }
        });
}
