//! The Station view's Fleet page: the station file, **Join fleet**, and the fleet's
//! connections as the running station reports them (repository, hawkBit, report store),
//! the outbox and how fresh the repository's metadata is.

use eframe::egui::{self, Color32, RichText};

use crate::gui::station::{StationIntent, StationState};
use crate::station::fleet::{Link, LinkState};
use crate::station::Threshold;

/// Draws the Fleet page.
pub fn show(ui: &mut egui::Ui, station: &mut StationState, out: &mut Vec<StationIntent>) {
    ui.heading("Fleet");
    ui.label(
        "A fleet member takes its packages from the fleet's repository, flashes what \
         hawkBit's rollouts offer each device, and sends every report to the fleet's bucket.",
    );
    if !station.running {
        ui.horizontal(|ui| {
            let label = ui.label("Station file");
            ui.add(egui::TextEdit::singleline(&mut station.fleet_file).desired_width(420.0))
                .labelled_by(label.id);
            let threshold = station.max_failures.parse::<Threshold>();
            let file = station.fleet_file.trim();
            let join = ui.add_enabled(
                !file.is_empty() && threshold.is_ok(),
                egui::Button::new("Join fleet"),
            );
            if let (true, Ok(max_failures)) = (join.clicked(), threshold) {
                out.push(StationIntent::StartFleet {
                    file: file.into(),
                    canaries: station.canaries,
                    max_failures,
                });
            }
        });
    }
    ui.separator();
    let Some(fleet) = station.board.fleet.clone() else {
        ui.label(if station.running {
            "This station runs on its own packages: not a fleet member."
        } else {
            "Not joined: name the station file (see README, Fleet) and join."
        });
        return;
    };
    ui.label(RichText::new(format!("Station {}", fleet.station)).strong());
    egui::Grid::new("fleet links")
        .num_columns(3)
        .spacing([16.0, 6.0])
        .show(ui, |ui| {
            link_row(ui, "Repository", &fleet.repository);
            link_row(ui, "hawkBit", &fleet.rollouts);
            link_row(ui, "Report store", &fleet.reports);
        });
    ui.label(format!("Outbox: {} pending", fleet.outbox_pending));
    ui.label(format!(
        "Last sync: {}",
        fleet.last_sync.as_deref().unwrap_or("never")
    ));
    if let Some(until) = &fleet.fresh_until {
        ui.label(format!("Metadata fresh until: {until}"));
    }
}

/// One connection: a coloured state, where it is, and the last error.
fn link_row(ui: &mut egui::Ui, name: &str, link: &Link) {
    let colour = match link.state {
        LinkState::Up => Color32::from_rgb(25, 130, 50),
        LinkState::Down => Color32::from_rgb(180, 25, 25),
        LinkState::Unknown => Color32::from_gray(120),
    };
    ui.label(RichText::new(format!("{name}: {}", link.state.word())).color(colour));
    ui.label(&link.at);
    ui.label(link.detail.as_deref().unwrap_or(""));
    ui.end_row();
}
