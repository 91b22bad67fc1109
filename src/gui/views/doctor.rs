//! The connection doctor's window: each finding with its fix, and a button that copies the
//! fix, since most fixes are a command to paste into a terminal.

use eframe::egui::{self, RichText};

use super::ok_color;
use crate::doctor::Severity;
use crate::gui::doctor::Diagnosis;
use crate::gui::state::{AppState, Intent};

pub fn show(ui: &mut egui::Ui, state: &mut AppState, out: &mut Vec<Intent>) {
    if !state.doctor.open {
        return;
    }
    let mut open = true;
    egui::Window::new("Connection doctor")
        .open(&mut open)
        .default_width(640.0)
        .show(ui.ctx(), |ui| {
            ui.label("Why a device may not be seen, and the fix for each reason.");
            ui.separator();
            match &state.doctor.state {
                Diagnosis::NotRun | Diagnosis::Running => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("Checking udev rules, seats, groups, ModemManager and drivers…");
                    });
                }
                Diagnosis::Done(findings) if findings.is_empty() => {
                    ui.label(RichText::new("Nothing in the way was found.").color(ok_color(ui)));
                }
                Diagnosis::Done(findings) => {
                    egui::ScrollArea::vertical()
                        .max_height(480.0)
                        .show(ui, |ui| {
                            for finding in findings {
                                let (tag, color) = match finding.severity {
                                    Severity::Problem => ("Problem", ui.visuals().error_fg_color),
                                    Severity::Warning => ("Warning", ui.visuals().warn_fg_color),
                                    Severity::Info => ("Note", ui.visuals().weak_text_color()),
                                };
                                ui.horizontal_wrapped(|ui| {
                                    ui.label(RichText::new(tag).color(color).strong());
                                    ui.label(&finding.what);
                                });
                                ui.horizontal_wrapped(|ui| {
                                    ui.label(RichText::new("Fix:").strong());
                                    ui.label(RichText::new(&finding.fix).monospace());
                                    if ui
                                        .small_button("Copy")
                                        .on_hover_text("copy the fix to the clipboard")
                                        .clicked()
                                    {
                                        ui.ctx().copy_text(finding.fix.clone());
                                    }
                                });
                                ui.separator();
                            }
                        });
                }
            }
            let running = state.doctor.state == Diagnosis::Running;
            if ui
                .add_enabled(!running, egui::Button::new("Check again"))
                .clicked()
            {
                out.push(state.doctor.open());
            }
        });
    state.doctor.open = open;
}
