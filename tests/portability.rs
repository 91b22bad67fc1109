//! flashline must build on Windows and macOS with no edits outside `src/platform.rs` and the
//! simulators. No Windows or macOS toolchain runs in CI, so this test reads the source:
//!
//! * Unix-only APIs (`std::os::unix`, `nix`, `libc`) appear only in `src/platform.rs`, next
//!   to their Windows counterparts, and in `src/sim/` (whose serial simulators are built on
//!   Unix only).
//! * Code outside `src/sim/` that uses a Unix-only simulator (`sim::edl`, `sim::modem`,
//!   `sim::bench`, `sim::gadget`) sits in an item gated with `cfg(unix)` or
//!   `cfg(target_os = "linux")`.
//!
//! This cannot prove that the Windows build type-checks: `.ci/windows-check` does that (see
//! README, "Platforms").

use std::path::{Path, PathBuf};

const UNIX_APIS: &[&str] = &["std::os::unix", "nix::", "libc::", "use nix", "use libc"];
const UNIX_SIMULATORS: &[&str] = &["sim::edl", "sim::modem", "sim::bench", "sim::gadget"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Source files outside the platform boundary, with their path relative to the crate.
fn outside_the_boundary() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .filter(|(rel, _)| rel != "src/platform.rs" && !rel.starts_with("src/sim/"))
        .collect()
}

fn is_unix_gate(line: &str) -> bool {
    let line = line.trim();
    let linux = line.contains("target_os = \"linux\"") && !line.contains("not(target_os");
    line.starts_with("#[cfg(") && !line.contains("not(unix)") && (line.contains("unix") || linux)
}

/// Whether line `at` sits inside an item (at any nesting level) whose attributes gate it to
/// Unix: walks out through the enclosing items by indentation.
fn gated_to_unix(lines: &[&str], at: usize) -> bool {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut level = indent(lines[at]);
    let mut i = at;
    loop {
        let line = lines[i];
        let trimmed = line.trim_start();
        // Closing lines belong to siblings or end a signature; they start no item.
        let is_item = !trimmed.is_empty()
            && !["//", "#[", ")", "}"]
                .iter()
                .any(|p| trimmed.starts_with(p))
            && indent(line) < level
            || i == at;
        if is_item {
            // The attributes right above this item.
            let mut j = i;
            while j > 0 && {
                let above = lines[j - 1].trim_start();
                above.starts_with("#[") || above.starts_with("///")
            } {
                j -= 1;
                if is_unix_gate(lines[j]) {
                    return true;
                }
            }
            level = indent(line);
            if level == 0 && i != at {
                return false;
            }
        }
        if i == 0 {
            return false;
        }
        i -= 1;
    }
}

#[test]
fn unix_apis_stay_behind_the_platform_boundary() {
    let mut offenders = Vec::new();
    for (rel, text) in outside_the_boundary() {
        let uses_unix = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .any(|l| UNIX_APIS.iter().any(|api| l.contains(api)));
        if uses_unix {
            offenders.push(rel);
        }
    }
    assert!(
        offenders.is_empty(),
        "Unix-only APIs outside src/platform.rs and src/sim/: {offenders:?}; move them behind src/platform.rs"
    );
}

#[test]
fn unix_only_simulators_are_used_only_under_a_unix_gate() {
    let mut offenders = Vec::new();
    for (rel, text) in outside_the_boundary() {
        let lines: Vec<&str> = text.lines().collect();
        for (n, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if UNIX_SIMULATORS.iter().any(|s| line.contains(s)) && !gated_to_unix(&lines, n) {
                offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "Unix-only simulators used where Windows builds too:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_gate_finder_sees_nested_and_missing_gates() {
    let src = "impl A {\n    #[cfg(unix)]\n    fn f() {\n        crate::sim::edl::x();\n    }\n    fn g() {\n        crate::sim::edl::y();\n    }\n}\n";
    let lines: Vec<&str> = src.lines().collect();
    assert!(gated_to_unix(&lines, 3));
    assert!(!gated_to_unix(&lines, 6));
    let use_block = "#[cfg(unix)]\nuse {\n    crate::sim::bench::X,\n};\n";
    let lines: Vec<&str> = use_block.lines().collect();
    assert!(gated_to_unix(&lines, 2));
    let signature = "#[cfg(target_os = \"linux\")]\n/// Doc.\nfn f(\n    a: u8,\n) -> u8 {\n    crate::sim::gadget::x()\n}\n";
    let lines: Vec<&str> = signature.lines().collect();
    assert!(gated_to_unix(&lines, 5));
}
