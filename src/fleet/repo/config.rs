//! The `[repository]` table of a station file (TOML), and the URLs a repository may use.
//!
//! ```toml
//! [repository]
//! metadata_url = "https://updates.example.com/metadata/"   # or file:///media/usb/metadata/
//! targets_url = "https://updates.example.com/targets/"
//! root = "root.json"        # the pinned root; relative to this file's folder
//! cache = "/var/cache/flashline"
//! ```
//!
//! Other tables of the station file belong to the rest of the fleet and are not read here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use url::Url;

use super::{RepoConfig, RepoError};

#[derive(Deserialize)]
struct StationFile {
    repository: Option<RepositoryTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RepositoryTable {
    metadata_url: String,
    targets_url: String,
    root: PathBuf,
    cache: PathBuf,
}

impl RepoConfig {
    /// A configuration from its parts, checking that both URLs are folders flashline can
    /// read from (`http`, `https` or `file`).
    pub fn new(
        metadata_url: &str,
        targets_url: &str,
        root: PathBuf,
        cache: PathBuf,
    ) -> Result<RepoConfig, RepoError> {
        Ok(RepoConfig {
            metadata_url: folder_url("metadata_url", metadata_url)?,
            targets_url: folder_url("targets_url", targets_url)?,
            root,
            cache,
        })
    }

    /// The `[repository]` table of the station file at `path`; relative paths are taken
    /// from the file's folder. `Ok(None)` when the file has no such table.
    pub fn from_station_file(path: &Path) -> Result<Option<RepoConfig>, RepoError> {
        const MAX_LEN: u64 = 1 << 20;
        let len = std::fs::metadata(path).map_err(RepoError::io(path))?.len();
        if len > MAX_LEN {
            return Err(RepoError::Config(format!(
                "{} is {len} bytes, too long for a station file",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(RepoError::io(path))?;
        let file: StationFile = toml::from_str(&text)
            .map_err(|e| RepoError::Config(format!("{}: {e}", path.display())))?;
        let Some(table) = file.repository else {
            return Ok(None);
        };
        let folder = path.parent().unwrap_or(Path::new("."));
        RepoConfig::new(
            &table.metadata_url,
            &table.targets_url,
            folder.join(table.root),
            folder.join(table.cache),
        )
        .map(Some)
    }
}

/// A base URL as tough wants it: a supported scheme, ending in `/`.
fn folder_url(key: &str, text: &str) -> Result<Url, RepoError> {
    let mut url =
        Url::parse(text).map_err(|e| RepoError::Config(format!("{key} {text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https" | "file") {
        return Err(RepoError::Config(format!(
            "{key} {text:?}: use an http://, https:// or file:// URL"
        )));
    }
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn station_file_paths_are_relative_to_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fleet.toml");
        std::fs::write(
            &file,
            "[station]\nname = \"s1\"\n[repository]\nmetadata_url = \"http://127.0.0.1:8080/metadata\"\ntargets_url = \"file:///media/usb/targets/\"\nroot = \"root.json\"\ncache = \"cache\"\n",
        )
        .unwrap();
        let config = RepoConfig::from_station_file(&file).unwrap().unwrap();
        assert_eq!(
            config.metadata_url.as_str(),
            "http://127.0.0.1:8080/metadata/"
        );
        assert_eq!(config.targets_url.as_str(), "file:///media/usb/targets/");
        assert_eq!(config.root, dir.path().join("root.json"));
        assert_eq!(config.cache, dir.path().join("cache"));
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        let e = RepoConfig::new("ftp://host/m/", "http://h/t/", "r".into(), "c".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("metadata_url") && e.contains("file://"), "{e}");
        let e = RepoConfig::new("http://h/m/", "not a url", "r".into(), "c".into())
            .unwrap_err()
            .to_string();
        assert!(e.contains("targets_url"), "{e}");
    }
}
