//! The repository picker (see [`crate::gui::repo`]): the repository's packages, how fresh
//! its metadata is, and a way to open each package once it is verified.

use eframe::egui;
use eframe::egui::RichText;

use crate::fleet::repo::Freshness;
use crate::gui::repo::{Listing, RepoPicker, RowPackage};
use crate::gui::state::Intent;

/// Draws the picker, if a repository is configured.
pub fn show(ui: &mut egui::Ui, picker: &mut RepoPicker, out: &mut Vec<Intent>) {
    picker.poll();
    if !picker.configured() {
        return;
    }
    if picker.busy() {
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_millis(200));
    }
    ui.separator();
    ui.horizontal(|ui| {
        ui.heading("Repository packages");
        if ui
            .add_enabled(
                picker.listing != Listing::Syncing,
                egui::Button::new("Sync"),
            )
            .on_hover_text("fetch and verify the repository's newest signed metadata")
            .clicked()
        {
            picker.sync();
        }
    });
    match &picker.listing {
        Listing::NotConfigured => {}
        Listing::Syncing => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("Syncing the repository's signed metadata…");
            });
        }
        Listing::Failed(reason) => {
            ui.label(
                RichText::new(reason)
                    .color(ui.visuals().error_fg_color)
                    .strong(),
            );
        }
        Listing::Ready(freshness) => freshness_line(ui, freshness),
    }
    let mut fetch = None;
    egui::Grid::new("repository packages")
        .num_columns(4)
        .spacing([12.0, 4.0])
        .show(ui, |ui| {
            for row in &picker.rows {
                ui.label(RichText::new(&row.target.name).strong());
                ui.label(format!("{:.1} MiB", row.target.length as f64 / 1048576.0));
                match &row.package {
                    RowPackage::NotFetched => {
                        ui.label(RichText::new("not downloaded").weak());
                        if ui
                            .button("Download and check")
                            .on_hover_text(
                                "download into the cache, checked against the repository's \
                                 signed hash, then check the package's own signature",
                            )
                            .clicked()
                        {
                            fetch = Some(row.target.name.clone());
                        }
                    }
                    RowPackage::Checking => {
                        ui.spinner();
                        ui.label("checking…");
                    }
                    RowPackage::Verified {
                        path,
                        name,
                        version,
                    } => {
                        ui.label(
                            RichText::new(format!("{name} {version}")).color(super::ok_color(ui)),
                        );
                        if ui.button("Open").clicked() {
                            out.push(Intent::OpenPackage(path.clone()));
                        }
                    }
                    RowPackage::Refused(reason) => {
                        ui.add(
                            egui::Label::new(
                                RichText::new(format!("Refused: {reason}"))
                                    .color(ui.visuals().error_fg_color),
                            )
                            .wrap(),
                        );
                        if ui.button("Retry").clicked() {
                            fetch = Some(row.target.name.clone());
                        }
                    }
                }
                ui.end_row();
            }
        });
    if let Some(name) = fetch {
        picker.fetch(&name);
    }
}

fn freshness_line(ui: &mut egui::Ui, freshness: &Freshness) {
    let text = format!("Metadata {}", freshness.describe());
    if freshness.online {
        ui.label(RichText::new(text).weak());
    } else {
        ui.label(RichText::new(text).color(ui.visuals().warn_fg_color));
    }
}
