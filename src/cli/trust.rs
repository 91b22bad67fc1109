//! `flashline trust` and `flashline key`: signing keys, trust roots and the trust folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::package::{self, RootDocument, RootKey, SignedRoot, TrustStore};

#[derive(Subcommand)]
pub(super) enum KeyCommand {
    /// Generate a signing key pair: DIR/NAME.key (secret) and DIR/NAME.pub.
    Gen {
        /// Key name.
        #[arg(long)]
        name: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum TrustCommand {
    /// Sign a new root: the keys it trusts, its threshold, and the signatures of the
    /// current root's key holders (and of the new keys, so the new root can sign its own
    /// successor). The result is checked the way stations will check it before it is written.
    Rotate {
        /// A public key (`NAME.pub`) the new root trusts; repeat for each key.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// How many distinct keys of the new root must sign its successor.
        #[arg(long)]
        threshold: u32,
        /// A role: which keys may sign packages for which products, as
        /// `NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]` (`*` in a pattern matches
        /// any run of characters); repeat for each role. Without one, every `--key` may sign
        /// for every product.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How long the new root is trusted (`365d`, `18months`); stations refuse it after.
        #[arg(long, default_value = "365d")]
        expires: humantime::Duration,
        /// A secret key (`NAME.key`) that signs the new root; repeat for each signer.
        #[arg(long = "sign", required = true)]
        signers: Vec<PathBuf>,
        /// The current root, which the new one replaces (its version + 1 is used); without
        /// it a first root (version 1) is made.
        #[arg(long)]
        previous: Option<PathBuf>,
        /// Where to write the new root.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Install a first root into a trust folder that has none (a deliberate act of trust,
    /// like copying a `.pub` file there).
    Init {
        /// The root file.
        root: PathBuf,
        /// The trust folder (default: flashline's own).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
    /// Replace the installed root with a newer one signed by a threshold of its keys.
    Update {
        /// The new root file.
        root: PathBuf,
        /// The trust folder (default: flashline's own).
        #[arg(long)]
        trust: Option<PathBuf>,
    },
}

#[derive(Args)]
pub(super) struct TrustArg {
    /// Trust the `.pub` keys in this folder instead of the default trust folder.
    #[arg(long)]
    trust: Option<PathBuf>,
}

pub(super) fn trust(command: TrustCommand) -> Result<ExitCode> {
    let folder = |dir: Option<PathBuf>| dir.unwrap_or_else(crate::paths::trust_dir);
    match command {
        TrustCommand::Rotate {
            keys,
            threshold,
            roles,
            expires,
            signers,
            previous,
            output,
        } => {
            let previous = previous.map(|p| SignedRoot::load(&p)).transpose()?;
            let keys: Vec<RootKey> = keys
                .iter()
                .map(|p| package::PublicKey::load(p).map(|k| RootKey::of(&k)))
                .collect::<Result<_, _>>()?;
            let roles = if roles.is_empty() {
                println!("no --role given: every key of the new root may sign for every product");
                vec![package::root::Role {
                    name: "all-products".into(),
                    products: vec!["*".into()],
                    threshold: 1,
                    keys: keys.clone(),
                }]
            } else {
                roles.iter().map(|r| parse_role(r)).collect::<Result<_>>()?
            };
            let document = RootDocument {
                version: previous.as_ref().map_or(1, |p| p.version() + 1),
                expires: package::root::Expiry::after(expires.into()),
                threshold,
                keys,
                roles,
            };
            let root = SignedRoot::sign(document, &signers)?;
            match &previous {
                Some(previous) => previous.check_successor(&root)?,
                None => root.check_self_signed()?,
            }
            std::fs::write(&output, root.to_file_text())
                .with_context(|| format!("cannot write {}", output.display()))?;
            println!(
                "trust root version {} ({} keys, threshold {}) → {}",
                root.version(),
                root.document().keys.len(),
                threshold,
                output.display()
            );
        }
        TrustCommand::Init { root, trust } => {
            let dir = folder(trust);
            let root = SignedRoot::load(&root)?;
            let moved = package::root::install_first(&dir, &root, &root_state())?;
            println!(
                "installed trust root version {} in {} (expires {})",
                root.version(),
                dir.display(),
                root.document().expires
            );
            if let Some(first) = moved.first() {
                println!(
                    "{} loose .pub files were moved to {}: they are no longer trusted, the root decides",
                    moved.len(),
                    first.parent().unwrap_or(&dir).display()
                );
            }
        }
        TrustCommand::Update { root, trust } => {
            let dir = folder(trust);
            let root = SignedRoot::load(&root)?;
            let replaced = package::root::update(&dir, &root, &root_state())?;
            println!(
                "trust root version {replaced} replaced by version {} in {}",
                root.version(),
                dir.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The station's record of installed trust roots, in flashline's home.
fn root_state() -> package::root::RootState {
    package::root::RootState::at(&crate::paths::home().join(package::root::STATE_FILE))
}

/// Parses `--role NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]`.
fn parse_role(spec: &str) -> Result<package::root::Role> {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let [name, products, threshold, keys] = parts[..] else {
        anyhow::bail!(
            "--role {spec:?}: expected NAME:PATTERN[,PATTERN…]:THRESHOLD:KEY.pub[,KEY.pub…]"
        );
    };
    let threshold = threshold
        .parse()
        .with_context(|| format!("--role {spec:?}: the threshold {threshold:?} is not a number"))?;
    let keys = keys
        .split(',')
        .map(|p| package::PublicKey::load(Path::new(p)).map(|k| RootKey::of(&k)))
        .collect::<Result<_, _>>()?;
    Ok(package::root::Role {
        name: name.to_string(),
        products: products.split(',').map(str::to_string).collect(),
        threshold,
        keys,
    })
}

pub(super) fn load_trust(arg: &TrustArg) -> Result<TrustStore> {
    Ok(match &arg.trust {
        Some(dir) => TrustStore::load_dir(dir)?,
        None => {
            let dir = crate::paths::trust_dir();
            if dir.is_dir() {
                TrustStore::load_dir(&dir)?
            } else {
                TrustStore::empty()
            }
        }
    })
}
