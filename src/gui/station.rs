//! The Station view's state: the station's [`Board`] as its events left it, the forms
//! (canaries, kill switch, slot labels, the resume dialog) and which slots flash.
//!
//! Like the rest of the GUI it holds no flashing logic: the station runner decides, this
//! renders its events and turns clicks into [`StationIntent`]s.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::station::{Board, StationEvent};

/// How long a slot flashes once it shows a new result.
pub const FLASH_FOR: Duration = Duration::from_secs(4);

/// What the Station view asks the bridge to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StationIntent {
    /// Start a station with these packages.
    Start {
        /// Packages offered.
        packages: Vec<PathBuf>,
        /// Canaries.
        canaries: usize,
        /// The kill switch (`2/10`).
        max_failures: crate::station::Threshold,
    },
    /// Start a station as a member of the fleet its station file describes.
    StartFleet {
        /// The station file.
        file: PathBuf,
        /// Canaries.
        canaries: usize,
        /// The kill switch.
        max_failures: crate::station::Threshold,
    },
    /// Stop taking devices; running jobs finish.
    Stop,
    /// Resume the halted batch in `batch`, recording who and why.
    Resume {
        /// The batch folder.
        batch: PathBuf,
        /// Who.
        by: String,
        /// Why.
        reason: String,
    },
    /// Show a folder (a report's) in the file manager.
    OpenFolder(PathBuf),
    /// Turn the sound on or off (saved in the station settings).
    Sound(bool),
    /// Save a slot's label (empty: remove it).
    Label {
        /// The slot.
        slot: String,
        /// The label.
        label: String,
    },
}

/// The resume dialog's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResumeForm {
    /// Who resumes.
    pub by: String,
    /// Why.
    pub reason: String,
}

/// Everything the Station view shows.
#[derive(Debug, Clone)]
pub struct StationState {
    /// The view is shown instead of the device list.
    pub open: bool,
    /// A station runs.
    pub running: bool,
    /// The board, from the station's events.
    pub board: Board,
    /// Canaries for the next start.
    pub canaries: usize,
    /// The kill switch for the next start, as typed.
    pub max_failures: String,
    /// Slot being renamed, and the text typed so far.
    pub renaming: Option<(String, String)>,
    /// The resume dialog, while open.
    pub resume: Option<ResumeForm>,
    /// When each slot last showed a new result.
    pub flashes: BTreeMap<String, Instant>,
    /// Ring the bell when a slot finishes.
    pub sound: bool,
    /// Labels from the settings, for slots not seen yet.
    pub labels: BTreeMap<String, String>,
    /// Why the last start failed.
    pub error: Option<String>,
    /// The Fleet page is shown instead of the slots.
    pub fleet_page: bool,
    /// The station file typed on the Fleet page.
    pub fleet_file: String,
}

impl Default for StationState {
    fn default() -> Self {
        StationState {
            open: false,
            running: false,
            board: Board::default(),
            canaries: 1,
            max_failures: "2/10".into(),
            renaming: None,
            resume: None,
            flashes: BTreeMap::new(),
            sound: false,
            labels: BTreeMap::new(),
            error: None,
            fleet_page: false,
            fleet_file: String::new(),
        }
    }
}

impl StationState {
    /// Takes the labels and the sound setting from the station settings under `home`.
    pub fn load_settings(&mut self, home: &std::path::Path) {
        let settings = crate::station::settings::Settings::load(home);
        self.labels = settings.labels;
        self.sound = settings.sound;
    }

    /// Applies one station event; a new result starts its slot flashing (and rings the
    /// bell when the sound is on).
    pub fn apply(&mut self, event: &StationEvent, now: Instant) {
        if let StationEvent::Started { .. } = event {
            self.board = Board::default();
            self.flashes.clear();
            self.running = true;
            self.error = None;
        }
        if let Some(slot) = self.board.apply(event) {
            self.flashes.insert(slot, now);
            if self.sound {
                // The terminal bell: a sound with no audio library. A generated tone
                // would need an audio output library, which on Linux links ALSA.
                eprint!("\x07");
            }
        }
    }

    /// Whether `slot` is flashing at `now`, and in which half of its blink.
    pub fn blink(&self, slot: &str, now: Instant) -> Option<bool> {
        let since = now.checked_duration_since(*self.flashes.get(slot)?)?;
        (since < FLASH_FOR).then_some((since.as_millis() / 400) % 2 == 0)
    }

    /// The label a slot shows: the settings' (edited here), else the station's.
    pub fn label_of(&self, slot: &str) -> Option<String> {
        self.labels
            .get(slot)
            .cloned()
            .or_else(|| self.board.slots.get(slot).and_then(|s| s.label.clone()))
    }

    /// A label was saved: shown at once, before the station hears of it.
    pub fn set_label(&mut self, slot: &str, label: &str) {
        let label = label.trim();
        if label.is_empty() {
            self.labels.remove(slot);
        } else {
            self.labels.insert(slot.to_string(), label.to_string());
        }
        if let Some(s) = self.board.slots.get_mut(slot) {
            s.label = (!label.is_empty()).then(|| label.to_string());
        }
    }
}
