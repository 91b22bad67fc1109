//! The device list: every device discovery sees, live, with a tick box for the next job.

use eframe::egui;
use eframe::egui::RichText;

use super::badge;
use crate::gui::state::{battery_text, bytes, lock_text, mode_name, AppState, Badge};

/// Draws the list.
pub fn show(ui: &mut egui::Ui, state: &mut AppState) {
    ui.heading("Devices");
    if state.devices.is_empty() {
        ui.label("No devices yet. Plug in a phone in fastboot mode, a USB modem or hotspot, or a device in emergency download mode; the list updates by itself.");
        return;
    }
    ui.label(RichText::new("Tick the devices to flash; each one gets its own preflight.").weak());
    let mut ticks = Vec::new();
    let mut recover = None;
    egui::ScrollArea::vertical()
        .id_salt("devices")
        .show(ui, |ui| {
            egui::Grid::new("device list")
                .striped(true)
                .num_columns(8)
                .spacing([12.0, 6.0])
                .show(ui, |ui| {
                    for title in [
                        "Device", "Mode", "Firmware", "Battery", "Lock", "Storage", "State", "",
                    ] {
                        ui.label(RichText::new(title).strong());
                    }
                    ui.end_row();
                    for d in &state.devices {
                        let mut selected = d.selected;
                        let enabled = d.present && !d.busy();
                        let response = ui
                            .add_enabled(enabled, egui::Checkbox::new(&mut selected, d.name()))
                            .on_hover_text(format!(
                                "{}{}",
                                d.address,
                                if d.is_virtual { " (virtual)" } else { "" }
                            ));
                        if response.changed() {
                            ticks.push((d.key.clone(), selected));
                        }
                        ui.label(mode_name(d.mode));
                        ui.label(d.firmware.as_deref().unwrap_or("—"));
                        ui.label(battery_text(d.battery));
                        ui.label(lock_text(d.lock));
                        ui.label(d.storage.map_or("—".to_string(), bytes));
                        badge(ui, d.badge());
                        if d.badge() == Badge::Bricked {
                            if ui.small_button("Recover…").clicked() {
                                recover = Some(d.key.clone());
                            }
                        } else {
                            ui.label("");
                        }
                        ui.end_row();
                    }
                });
        });
    for (key, selected) in ticks {
        state.select(&key, selected);
    }
    if let Some(key) = recover {
        state.open_wizard(Some(&key));
        state.wizard_recover(&key);
    }
}
