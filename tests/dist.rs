//! What the Linux package ships beside the binary (`flashline dist-assets`, packaged by
//! `.ci/deb`): generated from the command line itself, and the committed udev rules equal
//! to what the quirks file generates, so the repository's `udev/` folder can never drift.

use std::path::Path;
use std::process::Command;

fn dist_assets(out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_flashline"))
        .arg("dist-assets")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn committed_udev_rules_are_the_generated_ones() {
    let out = tempfile::tempdir().unwrap();
    dist_assets(out.path());
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("udev/70-flashline.rules");
    assert_eq!(
        read(&committed),
        read(&out.path().join("70-flashline.rules")),
        "udev/70-flashline.rules is stale: regenerate it with `flashline udev-rules > udev/70-flashline.rules`"
    );
}

#[test]
fn man_pages_and_completions_cover_every_visible_command() {
    let out = tempfile::tempdir().unwrap();
    dist_assets(out.path());
    let main_page = read(&out.path().join("man/flashline.1"));
    assert!(main_page.contains(".TH flashline 1"), "{main_page}");
    let flash = read(&out.path().join("man/flashline-flash.1"));
    assert!(flash.contains("\\fB\\-\\-device\\fR"), "{flash}");
    assert!(flash.contains(env!("CARGO_PKG_VERSION")), "{flash}");
    // A page per command a technician types; none for the hidden packaging step or `help`.
    for command in ["flash", "recover", "devices", "doctor", "verify", "pack"] {
        assert!(out
            .path()
            .join(format!("man/flashline-{command}.1"))
            .is_file());
    }
    assert!(!out.path().join("man/flashline-dist-assets.1").exists());
    assert!(!out.path().join("man/flashline-help.1").exists());

    let bash = read(&out.path().join("completions/flashline.bash"));
    let zsh = read(&out.path().join("completions/_flashline"));
    let fish = read(&out.path().join("completions/flashline.fish"));
    for script in [&bash, &zsh, &fish] {
        assert!(script.contains("recover") && script.contains("dry-run"));
    }
    assert!(zsh.starts_with("#compdef flashline"));
}
