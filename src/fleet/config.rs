//! The station file: one TOML file that makes a station a fleet member.
//!
//! ```toml
//! [station]
//! name = "lyon-3"
//!
//! [repository]                  # packages: a TUF repository on any static host
//! metadata_url = "https://updates.example.com/metadata/"
//! targets_url = "https://updates.example.com/targets/"
//! root = "root.json"            # the pinned TUF root
//! cache = "cache"
//!
//! [hawkbit]                     # rollouts: hawkBit's device API, as a gateway
//! url = "https://hawkbit.example.com"
//! tenant = "DEFAULT"
//! token_file = "gateway.token"  # mode 0600
//! poll_min = "2s"               # the server's polling sleep is kept within these
//! poll_max = "60s"
//! id_salt_file = "id.salt"      # devices' target ids are salted hashes of serial and IMEI
//!
//! [reports]                     # reports: any S3-compatible store
//! endpoint = "https://s3.example.com"
//! bucket = "flashline-reports"
//! region = "eu-west-1"
//! credentials_file = "s3.credentials"  # mode 0600
//! outbox = "outbox"
//! ```
//!
//! Relative paths are read against the file's own folder, so a station folder can be moved
//! or copied whole. Secrets are not in this file: it names the files that hold them, which
//! are read (and their mode checked) when the station connects. Every value is checked
//! here, and a bad one is named with its section and key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use url::Url;

/// Longest station file read: it is a dozen lines.
const MAX_LEN: u64 = 64 * 1024;
/// The fleet file's name in flashline's home, where the GUI looks for it. (`station.toml`
/// there is the bench's own settings file: slot labels and sound.)
pub const FILE: &str = "fleet.toml";
/// Fewest bytes of salt: a short salt makes target ids guessable from serials.
const MIN_SALT: usize = 16;
/// Largest salt file read.
const MAX_SALT: u64 = 4096;

/// Why a station file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or a file it names) cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// Not TOML, or not this file's shape (a missing or unknown key).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A value is wrong.
    #[error("{path}: [{section}] {key}: {why}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The section.
        section: &'static str,
        /// The key.
        key: &'static str,
        /// What is wrong, and what would be right.
        why: String,
    },
}

/// A station's fleet settings, checked, with every path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The file it was read from.
    pub file: PathBuf,
    /// The station's name in the fleet (in report keys and configData).
    pub station: String,
    /// Where packages come from.
    pub repository: RepositorySettings,
    /// Where rollouts come from.
    pub hawkbit: HawkbitSettings,
    /// Where reports go.
    pub reports: ReportSettings,
}

/// `[repository]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositorySettings {
    /// The folder of the TUF metadata (`timestamp.json` …), ending in `/`.
    pub metadata_url: Url,
    /// The folder of the targets (the packages), ending in `/`.
    pub targets_url: Url,
    /// The pinned `root.json`.
    pub root: PathBuf,
    /// The station's cache: verified metadata and packages, named by their hashes.
    pub cache: PathBuf,
}

/// `[hawkbit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HawkbitSettings {
    /// The server's base URL.
    pub url: Url,
    /// The tenant.
    pub tenant: String,
    /// The file holding the gateway token (mode 0600).
    pub token_file: PathBuf,
    /// The shortest interval between two polls of one device.
    pub poll_min: Duration,
    /// The longest interval between two polls of one device: a pause reaches the bench
    /// within this (plus the server's own scheduler interval).
    pub poll_max: Duration,
    /// The file holding the salt of target ids.
    pub id_salt_file: PathBuf,
}

/// `[reports]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSettings {
    /// The S3-compatible endpoint.
    pub endpoint: Url,
    /// The bucket.
    pub bucket: String,
    /// The region.
    pub region: String,
    /// The file holding the access key id and secret (mode 0600).
    pub credentials_file: PathBuf,
    /// The outbox folder: reports wait there while the store is unreachable.
    pub outbox: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    station: RawStation,
    repository: RawRepository,
    hawkbit: RawHawkbit,
    reports: RawReports,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStation {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepository {
    metadata_url: String,
    targets_url: String,
    root: PathBuf,
    cache: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHawkbit {
    url: String,
    tenant: String,
    token_file: PathBuf,
    #[serde(default = "default_poll_min")]
    poll_min: String,
    #[serde(default = "default_poll_max")]
    poll_max: String,
    id_salt_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    endpoint: String,
    bucket: String,
    region: String,
    credentials_file: PathBuf,
    outbox: PathBuf,
}

fn default_poll_min() -> String {
    "2s".into()
}

fn default_poll_max() -> String {
    "60s".into()
}

impl FleetConfig {
    /// Reads and checks the station file at `path`.
    pub fn load(path: &Path) -> Result<FleetConfig, ConfigError> {
        let text = read_small(path, MAX_LEN)?;
        let text = String::from_utf8(text).map_err(|_| ConfigError::Parse {
            path: path.to_path_buf(),
            message: "not UTF-8 text".into(),
        })?;
        let base = std::path::absolute(path)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        FleetConfig::parse(&text, path, &base)
    }

    /// Checks the station file's `text`; `path` names it in errors and relative paths are
    /// read against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<FleetConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let bad = |section, key, why: String| ConfigError::Value {
            path: path.to_path_buf(),
            section,
            key,
            why,
        };
        let at = |p: &Path| base.join(p);
        let station = raw.station.name;
        if station.is_empty()
            || station.len() > 64
            || !station
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad(
                "station",
                "name",
                format!("{station:?}: use 1 to 64 letters, digits, '-', '_' or '.' (it is part of every report's key)"),
            ));
        }
        let repo_url = |key, text: &str| {
            folder_url(text, &["https", "http", "file"]).map_err(|why| bad("repository", key, why))
        };
        let repository = RepositorySettings {
            metadata_url: repo_url("metadata_url", &raw.repository.metadata_url)?,
            targets_url: repo_url("targets_url", &raw.repository.targets_url)?,
            root: at(&raw.repository.root),
            cache: at(&raw.repository.cache),
        };
        let duration = |key, text: &str| {
            humantime::parse_duration(text).map_err(|e| {
                bad(
                    "hawkbit",
                    key,
                    format!("{text:?} is not a duration like \"5s\" ({e})"),
                )
            })
        };
        let poll_min = duration("poll_min", &raw.hawkbit.poll_min)?;
        let poll_max = duration("poll_max", &raw.hawkbit.poll_max)?;
        if poll_min.is_zero() {
            return Err(bad("hawkbit", "poll_min", "must be more than 0".into()));
        }
        if poll_max < poll_min {
            return Err(bad(
                "hawkbit",
                "poll_max",
                format!(
                    "{} is less than poll_min ({})",
                    raw.hawkbit.poll_max, raw.hawkbit.poll_min
                ),
            ));
        }
        let tenant = raw.hawkbit.tenant;
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        {
            return Err(bad(
                "hawkbit",
                "tenant",
                format!("{tenant:?}: a tenant is letters, digits, '-' or '_'"),
            ));
        }
        let hawkbit = HawkbitSettings {
            url: server_url(&raw.hawkbit.url).map_err(|why| bad("hawkbit", "url", why))?,
            tenant,
            token_file: at(&raw.hawkbit.token_file),
            poll_min,
            poll_max,
            id_salt_file: at(&raw.hawkbit.id_salt_file),
        };
        let bucket = raw.reports.bucket;
        if let Err(why) = check_bucket(&bucket) {
            return Err(bad("reports", "bucket", format!("{bucket:?}: {why}")));
        }
        if raw.reports.region.is_empty() {
            return Err(bad("reports", "region", "empty (S3-compatible stores that have no regions take any name, e.g. \"us-east-1\")".into()));
        }
        let reports = ReportSettings {
            endpoint: server_url(&raw.reports.endpoint)
                .map_err(|why| bad("reports", "endpoint", why))?,
            bucket,
            region: raw.reports.region,
            credentials_file: at(&raw.reports.credentials_file),
            outbox: at(&raw.reports.outbox),
        };
        Ok(FleetConfig {
            file: path.to_path_buf(),
            station,
            repository,
            hawkbit,
            reports,
        })
    }

    /// The salt of target ids, read from `[hawkbit] id_salt_file`.
    pub fn id_salt(&self) -> Result<Vec<u8>, ConfigError> {
        let path = &self.hawkbit.id_salt_file;
        let salt = read_small(path, MAX_SALT)?;
        let salt = salt.trim_ascii().to_vec();
        if salt.len() < MIN_SALT {
            return Err(ConfigError::Value {
                path: self.file.clone(),
                section: "hawkbit",
                key: "id_salt_file",
                why: format!(
                    "{} holds {} bytes of salt; use at least {MIN_SALT} random bytes, the same on every station of the fleet",
                    path.display(),
                    salt.len()
                ),
            });
        }
        Ok(salt)
    }
}

/// Reads a file of at most `max` bytes.
fn read_small(path: &Path, max: u64) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > max {
        return Err(ConfigError::Parse {
            path: path.to_path_buf(),
            message: format!("larger than {max} bytes: not the file meant"),
        });
    }
    Ok(bytes)
}

/// A server's base URL: http or https, with a host, no user or password in it.
fn server_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?}: use an http:// or https:// URL"));
    }
    if url.host().is_none() {
        return Err(format!("{text:?} names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // A URL is printed and logged; credentials go in their own 0600 file.
        return Err("the URL holds credentials: put them in their own file".into());
    }
    Ok(url)
}

/// A folder's URL (ending in `/`, so names join under it) with one of `schemes`.
fn folder_url(text: &str, schemes: &[&str]) -> Result<Url, String> {
    let mut url = Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e})"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "{text:?}: use one of {}",
            schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if url.scheme() != "file" {
        server_url(url.as_str())?;
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// S3's bucket naming rules, which every S3-compatible store accepts.
fn check_bucket(name: &str) -> Result<(), &'static str> {
    if !(3..=63).contains(&name.len()) {
        return Err("a bucket name is 3 to 63 characters");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err("a bucket name is lower-case letters, digits, '-' and '.'");
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(name.chars().next()) || !edge(name.chars().last()) {
        return Err("a bucket name starts and ends with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[station]
name = "lyon-3"

[repository]
metadata_url = "https://updates.example.com/metadata"
targets_url = "file:///media/usb/targets/"
root = "root.json"
cache = "/var/cache/flashline"

[hawkbit]
url = "https://hawkbit.example.com"
tenant = "DEFAULT"
token_file = "secrets/gateway.token"
poll_min = "1s"
poll_max = "30s"
id_salt_file = "id.salt"

[reports]
endpoint = "http://127.0.0.1:9000"
bucket = "flashline-reports"
region = "eu-west-1"
credentials_file = "s3.credentials"
outbox = "outbox"
"#;

    fn parse(text: &str) -> Result<FleetConfig, ConfigError> {
        FleetConfig::parse(text, Path::new("station.toml"), Path::new("/etc/flashline"))
    }

    #[test]
    fn a_good_file_reads_with_paths_against_its_folder() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.station, "lyon-3");
        assert_eq!(
            c.repository.metadata_url.as_str(),
            "https://updates.example.com/metadata/"
        );
        assert_eq!(c.repository.root, Path::new("/etc/flashline/root.json"));
        assert_eq!(c.repository.cache, Path::new("/var/cache/flashline"));
        assert_eq!(
            c.hawkbit.token_file,
            Path::new("/etc/flashline/secrets/gateway.token")
        );
        assert_eq!(c.hawkbit.poll_max, Duration::from_secs(30));
        assert_eq!(c.reports.outbox, Path::new("/etc/flashline/outbox"));
    }

    #[test]
    fn every_bad_value_is_named_with_its_section_and_key() {
        let cases = [
            ("name = \"lyon-3\"", "name = \"lyon 3\"", "[station] name"),
            (
                "https://hawkbit.example.com",
                "ftp://hawkbit.example.com",
                "[hawkbit] url",
            ),
            (
                "https://hawkbit.example.com",
                "https://admin:pw@hawkbit.example.com",
                "holds credentials",
            ),
            (
                "poll_max = \"30s\"",
                "poll_max = \"500ms\"",
                "[hawkbit] poll_max",
            ),
            (
                "poll_min = \"1s\"",
                "poll_min = \"soon\"",
                "[hawkbit] poll_min",
            ),
            (
                "\"flashline-reports\"",
                "\"Flashline_Reports\"",
                "[reports] bucket",
            ),
            (
                "region = \"eu-west-1\"",
                "region = \"\"",
                "[reports] region",
            ),
            (
                "tenant = \"DEFAULT\"",
                "tenant = \"a/b\"",
                "[hawkbit] tenant",
            ),
            (
                "file:///media/usb/targets/",
                "s3://bucket/targets",
                "[repository] targets_url",
            ),
        ];
        for (from, to, expect) in cases {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(expect), "{to}: {err}");
        }
        let unknown = GOOD.replace("[station]\n", "[station]\ncolour = \"red\"\n");
        assert!(parse(&unknown).unwrap_err().to_string().contains("colour"));
        let missing = GOOD.replace("bucket = \"flashline-reports\"\n", "");
        assert!(parse(&missing).unwrap_err().to_string().contains("bucket"));
    }

    #[test]
    fn a_short_salt_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = FleetConfig::parse(GOOD, Path::new("station.toml"), dir.path()).unwrap();
        std::fs::write(dir.path().join("id.salt"), "short\n").unwrap();
        let err = c.id_salt().unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
        std::fs::write(dir.path().join("id.salt"), "0123456789abcdef0123\n").unwrap();
        assert_eq!(c.id_salt().unwrap(), b"0123456789abcdef0123");
    }
}
