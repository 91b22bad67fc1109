//! The firmware version a flashed image announces.
//!
//! Real phones learn their version from the firmware they boot. The virtual phone does
//! the same in the simplest honest way: a version partition may carry the ASCII lines
//! `FLASHLINE-VERSION=<version>\n` and optionally `FLASHLINE-SECURITY=<n>\n` somewhere in
//! its first [`MARKER_WINDOW`] bytes, and the phone reports them after it boots that image.

/// How many leading bytes of the version partition are searched.
pub(crate) const MARKER_WINDOW: usize = 4096;
/// Longest version text accepted, so it always fits a fastboot response.
const MAX_VERSION_LEN: usize = 64;

const VERSION_KEY: &[u8] = b"FLASHLINE-VERSION=";
const SECURITY_KEY: &[u8] = b"FLASHLINE-SECURITY=";

/// What an image says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    /// Reported as `version-bootloader`.
    pub version: String,
    /// Anti-rollback level, if the image declares one.
    pub security: Option<u64>,
}

/// Finds the marker in the start of a partition. A missing, unterminated or unprintable
/// version means no marker; a malformed security line is ignored on its own.
pub(crate) fn find(prefix: &[u8]) -> Option<Marker> {
    let window = &prefix[..prefix.len().min(MARKER_WINDOW)];
    let version = value_of(window, VERSION_KEY)
        .filter(|v| !v.is_empty() && v.len() <= MAX_VERSION_LEN)
        .filter(|v| v.iter().all(|b| (0x21..0x7f).contains(b)))?;
    let security = value_of(window, SECURITY_KEY)
        .filter(|v| !v.is_empty() && v.iter().all(u8::is_ascii_digit))
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
    Some(Marker {
        version: String::from_utf8_lossy(version).into_owned(),
        security,
    })
}

/// The bytes between `key` and the next newline.
fn value_of<'a>(window: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = window.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &window[start..];
    let end = rest.iter().position(|&b| b == b'\n')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_anywhere_in_the_window() {
        let mut image = vec![0u8; 100];
        image.extend_from_slice(b"FLASHLINE-VERSION=3.1.0\nFLASHLINE-SECURITY=9\n");
        assert_eq!(
            find(&image),
            Some(Marker {
                version: "3.1.0".into(),
                security: Some(9)
            })
        );
        assert_eq!(
            find(b"FLASHLINE-VERSION=1.0\n").map(|m| m.security),
            Some(None)
        );
    }

    #[test]
    fn broken_markers_are_not_believed() {
        assert_eq!(find(b"FLASHLINE-VERSION=3.1.0"), None);
        assert_eq!(find(b"FLASHLINE-VERSION=\n"), None);
        assert_eq!(find(b"FLASHLINE-VERSION=a b\n"), None);
        assert_eq!(find(b"FLASHLINE-SECURITY=9\n"), None);
        let mut late = vec![b' '; MARKER_WINDOW];
        late.extend_from_slice(b"FLASHLINE-VERSION=9\n");
        assert_eq!(find(&late), None);
        assert_eq!(
            find(b"FLASHLINE-VERSION=2\nFLASHLINE-SECURITY=-1\n").map(|m| m.security),
            Some(None)
        );
    }
}
