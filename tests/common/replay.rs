//! Virtual phones that answer as real devices did, from the transcripts in
//! tests/data/fastboot (see SOURCES.md there).

use std::path::{Path, PathBuf};

use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone, Transcript};

/// The folder of real `getvar all` transcripts.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fastboot")
}

/// Every transcript in the corpus, by file name, sorted.
pub fn corpus_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".txt"))
        .collect();
    names.sort();
    names
}

/// The phone's configuration for a corpus file (`pixel-7-pro.txt`), to adjust before
/// starting it.
pub fn replay_config(file: &str) -> PhoneConfig {
    let transcript =
        Transcript::load(&corpus_dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    PhoneConfig::replaying(transcript)
}

/// Starts a phone that answers as the device of `file` did, its partitions (sparse files)
/// under `dir`. Give `phone.device_address()` (`tcp:127.0.0.1:PORT`) to a client; the phone
/// stops when dropped.
pub fn replay_phone(file: &str, dir: &Path) -> RunningPhone {
    PhoneSim::start("127.0.0.1:0".parse().unwrap(), dir, replay_config(file))
        .unwrap_or_else(|e| panic!("cannot start a phone replaying {file}: {e}"))
}
