//! The bottom pane: the log of every device, and the jobs' reports, readable and as JSON.

use eframe::egui;
use eframe::egui::RichText;
use serde_json::Value;

use crate::device::printable;
use crate::gui::state::{AppState, Intent, Level, Pane, ReportView};

/// Draws the pane.
pub fn show(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    ui.horizontal(|ui| {
        ui.selectable_value(&mut state.pane, Pane::Log, "Log");
        let reports = format!("Reports ({})", state.reports.len());
        ui.selectable_value(&mut state.pane, Pane::Reports, reports);
        ui.separator();
        if ui.button("Open report folder").clicked() {
            out.push(Intent::OpenFolder(state.settings.reports_dir.clone()));
        }
    });
    ui.separator();
    match state.pane {
        Pane::Log => log(ui, state),
        Pane::Reports => reports(ui, state),
    }
}

fn log(ui: &mut egui::Ui, state: &AppState) {
    egui::ScrollArea::vertical()
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show_rows(
            ui,
            ui.text_style_height(&egui::TextStyle::Monospace),
            state.log.len(),
            |ui, rows| {
                for line in state.log.range(rows) {
                    let color = match line.level {
                        Level::Info => ui.visuals().text_color(),
                        Level::Warn => ui.visuals().warn_fg_color,
                        Level::Error => ui.visuals().error_fg_color,
                    };
                    let device = line.device.as_deref().unwrap_or("");
                    ui.label(
                        RichText::new(format!(
                            "{:>8.2}  {:<14} {}",
                            line.at,
                            printable(device),
                            printable(&line.text)
                        ))
                        .monospace()
                        .color(color),
                    );
                }
            },
        );
}

fn reports(ui: &mut egui::Ui, state: &mut AppState) {
    if state.reports.is_empty() {
        ui.label("Each job writes a JSON report; the reports of this session's jobs show here.");
        return;
    }
    ui.columns(2, |cols| {
        egui::ScrollArea::vertical()
            .id_salt("report list")
            .show(&mut cols[0], |ui| {
                for (i, r) in state.reports.iter().enumerate().rev() {
                    let outcome = r
                        .json
                        .as_ref()
                        .and_then(|j| j["outcome"].as_str())
                        .unwrap_or("unreadable");
                    let label = format!("{} — {outcome}", r.key);
                    if ui
                        .selectable_label(state.open_report == Some(i), label)
                        .clicked()
                    {
                        state.open_report = Some(i);
                    }
                }
            });
        let open = state.open_report.or(state.reports.len().checked_sub(1));
        if let Some(report) = open.and_then(|i| state.reports.get(i)) {
            egui::ScrollArea::vertical()
                .id_salt("report")
                .show(&mut cols[1], |ui| readable(ui, report));
        }
    });
}

/// A report for people, then its JSON.
fn readable(ui: &mut egui::Ui, r: &ReportView) {
    ui.label(RichText::new(r.path.display().to_string()).weak());
    if let Some(e) = &r.error {
        ui.colored_label(ui.visuals().error_fg_color, printable(e).into_owned());
    }
    let Some(j) = &r.json else {
        return;
    };
    let text = |v: &Value| match v {
        Value::Null => "—".to_string(),
        Value::String(s) => printable(s).into_owned(),
        other => other.to_string(),
    };
    egui::Grid::new(("report facts", &r.path))
        .num_columns(2)
        .show(ui, |ui| {
            let mut row = |name: &str, value: String| {
                ui.label(RichText::new(name).strong());
                ui.label(value);
                ui.end_row();
            };
            row("Outcome", text(&j["outcome"]));
            if !j["error"].is_null() {
                row("Error", text(&j["error"]));
            }
            row(
                "Package",
                format!(
                    "{} {}",
                    text(&j["package"]["name"]),
                    text(&j["package"]["version"])
                ),
            );
            row(
                "Device",
                format!(
                    "{} serial {}",
                    text(&j["device"]["product"]),
                    text(&j["device"]["serial"])
                ),
            );
            row(
                "Before",
                format!(
                    "{} (security {})",
                    text(&j["before"]["firmware"]),
                    text(&j["before"]["security"])
                ),
            );
            row(
                "After",
                format!(
                    "{} (security {})",
                    text(&j["after"]["firmware"]),
                    text(&j["after"]["security"])
                ),
            );
            row("Started", text(&j["started_at"]));
            row("Finished", text(&j["finished_at"]));
        });
    if let Some(images) = j["images"].as_array() {
        ui.label(RichText::new("Images").strong());
        for i in images {
            ui.label(format!(
                "{} to {}: {} ({} bytes)",
                text(&i["partition"]),
                text(&i["target"]),
                text(&i["status"]),
                text(&i["bytes"])
            ));
        }
    }
    if let Some(parts) = j["backup"]["partitions"].as_array() {
        let labels: Vec<String> = parts.iter().map(|p| text(&p["label"])).collect();
        ui.label(format!(
            "Backup in {}: {}",
            text(&j["backup"]["dir"]),
            labels.join(", ")
        ));
    }
    if let Some(notes) = j["notes"].as_array() {
        for n in notes {
            ui.label(RichText::new(text(n)).weak());
        }
    }
    if let Some(raw) = &r.text {
        egui::CollapsingHeader::new("JSON")
            .id_salt(("json", &r.path))
            .show(ui, |ui| {
                ui.label(RichText::new(raw).monospace());
            });
    }
}
