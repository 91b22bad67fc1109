//! Character rules for every string a package or key file carries.
//!
//! Partition names end up inside device commands and key names inside file names, so they
//! follow a small allowlist rather than a list of forbidden sequences. Free text that is only
//! ever displayed (products, descriptions, image file names) may hold any printable text but
//! no control characters, so it cannot rewrite a terminal or a log line.

use super::PackageError;

/// Longest identifier (partition, key or package name).
pub const MAX_IDENTIFIER_LEN: usize = 64;
/// Longest product string; fastboot `getvar` answers are shorter still.
pub const MAX_PRODUCT_LEN: usize = 64;
/// Longest image display name.
pub const MAX_DISPLAY_NAME_LEN: usize = 255;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 4096;

/// Checks an identifier: 1..=64 of `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
///
/// A leading `-` could be read as an option by tools, a leading `.` makes hidden or
/// relative-looking file names; real partition names never start with either.
pub fn identifier(what: &'static str, value: &str) -> Result<(), PackageError> {
    let fail = |reason| {
        Err(PackageError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_IDENTIFIER_LEN {
        return fail("it is longer than 64 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return fail("only letters, digits, '_', '.' and '-' are allowed");
    }
    if value.starts_with(['.', '-']) {
        return fail("it must not start with '.' or '-'");
    }
    Ok(())
}

/// Checks a product string: non-empty printable ASCII (space included), at most 64 bytes.
pub fn product(value: &str) -> Result<(), PackageError> {
    let fail = |reason| {
        Err(PackageError::InvalidName {
            what: "product",
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > MAX_PRODUCT_LEN {
        return fail("it is longer than 64 characters");
    }
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return fail("only printable ASCII is allowed");
    }
    Ok(())
}

/// Checks text that is only displayed: no control characters except, if `multiline`,
/// newline and tab; at most `max` bytes; non-empty.
pub fn display_text(
    what: &'static str,
    value: &str,
    max: usize,
    multiline: bool,
) -> Result<(), PackageError> {
    let fail = |reason| {
        Err(PackageError::InvalidName {
            what,
            value: value.to_owned(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("it is empty");
    }
    if value.len() > max {
        return fail("it is too long");
    }
    let allowed = |c: char| !c.is_control() || (multiline && matches!(c, '\n' | '\t'));
    if !value.chars().all(allowed) {
        return fail("it contains control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in [
            "boot",
            "system_a",
            "vendor-boot",
            "abl.elf",
            "A1",
            &"x".repeat(64),
        ] {
            assert!(identifier("partition name", ok).is_ok(), "{ok}");
        }
        let evil = [
            "",
            "..",
            ".hidden",
            "-w",
            "../boot",
            "boot/a",
            "boot a",
            "boot\0",
            "C:\\x",
            "bööt",
            "boot;reboot",
            &"x".repeat(65),
        ];
        for bad in evil {
            assert!(identifier("partition name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn products_and_display_text() {
        assert!(product("zte-demo-phone").is_ok());
        assert!(product("MF920 V").is_ok());
        assert!(product("").is_err());
        assert!(product("a\u{1b}[2J").is_err());
        assert!(product("é").is_err());
        assert!(product(&"p".repeat(65)).is_err());
        assert!(display_text("description", "line\nline\t2", 100, true).is_ok());
        assert!(display_text("file", "a\nb", 100, false).is_err());
        assert!(display_text("file", "x\u{1b}", 100, false).is_err());
        assert!(display_text("file", "xx", 1, false).is_err());
    }
}
