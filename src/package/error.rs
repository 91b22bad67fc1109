//! Every way a package, a key or a trust directory can be refused.
//!
//! Each variant names one specific problem so that a technician reading the message knows
//! what is wrong and with which file, partition or key, and so that callers and tests can
//! match on the exact reason.

use std::io;
use std::path::PathBuf;

use super::keys::KeyId;
use super::qualcomm::XmlError;
use crate::protocol::sparse::SparseError;

/// Why a package could not be packed, opened, verified or read, or a key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The package file is shorter than its own header says it must be.
    #[error(
        "the package file is incomplete (damaged or still downloading): it is {actual} bytes \
         long but needs at least {needed}"
    )]
    Truncated {
        /// Bytes the header and manifest account for so far.
        needed: u64,
        /// Actual file length.
        actual: u64,
    },
    /// The package file has bytes after its last image.
    #[error("the package file has {extra} unexpected bytes after its last image")]
    TrailingBytes {
        /// How many bytes follow the last image.
        extra: u64,
    },
    /// The file does not start with the package magic.
    #[error("this is not a flashline package (unrecognised file header)")]
    BadMagic,
    /// A container format version this build does not understand.
    #[error("package format version {0} is not supported by this version of flashline")]
    UnsupportedVersion(u32),
    /// The manifest is larger than the fixed cap.
    #[error("the package manifest is {size} bytes; at most {max} are allowed")]
    ManifestTooLarge {
        /// Declared or produced manifest length.
        size: u64,
        /// The cap.
        max: u64,
    },
    /// The signed manifest is not valid JSON of the expected shape.
    #[error("the package manifest is invalid: {0}")]
    ManifestInvalid(String),
    /// The release engineer's TOML manifest could not be read.
    #[error("the manifest {path} is invalid: {message}")]
    ManifestTomlInvalid {
        /// The TOML file.
        path: PathBuf,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A list in the manifest is empty that must not be.
    #[error("the manifest lists no {what}; at least one is required")]
    EmptyList {
        /// `"targets"` or `"images"`.
        what: &'static str,
    },
    /// A list in the manifest or package is longer than allowed.
    #[error("the package has {count} {what}; at most {max} are allowed")]
    TooMany {
        /// What was counted.
        what: &'static str,
        /// How many there are.
        count: u64,
        /// The cap.
        max: u64,
    },
    /// `min_battery_percent` is above 100.
    #[error("min_battery_percent is {0}; it must be between 0 and 100")]
    BatteryPercentOutOfRange(u8),
    /// A name, product or text field breaks the allowed character set or length.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// Which kind of name (`"partition name"`, `"key name"`, …).
        what: &'static str,
        /// The offending value (printed escaped).
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Two images write the same partition.
    #[error("partition {0:?} appears more than once in the manifest")]
    DuplicatePartition(String),
    /// An image path in the TOML manifest escapes the manifest's directory.
    #[error("image file {0:?} must be a relative path inside the manifest's directory")]
    ImagePathInvalid(String),
    /// An image source is a symlink, directory or device rather than a regular file.
    #[error("{path} is not a regular file ({kind}); images must be plain files")]
    NotARegularFile {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// An image of zero bytes.
    #[error("the image for partition {partition:?} is empty")]
    EmptyImage {
        /// Its partition.
        partition: String,
    },
    /// An image declares a size no real partition has.
    #[error(
        "the image for partition {partition:?} declares {size} bytes, more than any real image"
    )]
    DeclaredSizeTooLarge {
        /// Its partition.
        partition: String,
        /// The declared size.
        size: u64,
    },
    /// An image that starts like a sparse image but is not a valid one.
    #[error("the image for partition {partition:?} is not a valid sparse image: {source}")]
    SparseInvalid {
        /// Its partition.
        partition: String,
        /// The sparse reader's reason.
        #[source]
        source: SparseError,
    },
    /// A sparse image with bytes after its last chunk.
    #[error("the sparse image for partition {partition:?} has {extra} bytes after its last chunk")]
    SparseTrailingData {
        /// Its partition.
        partition: String,
        /// Bytes after the last chunk.
        extra: u64,
    },
    /// A sparse record in the manifest whose numbers do not agree.
    #[error("the sparse description of partition {partition:?} is inconsistent")]
    SparseInfoInconsistent {
        /// Its partition.
        partition: String,
    },
    /// More signature entries than the format allows.
    #[error("the package carries {count} signatures; at most {max} are allowed")]
    TooManySignatures {
        /// Declared count.
        count: u32,
        /// The cap.
        max: u32,
    },
    /// The package is not signed at all.
    #[error("the package is not signed")]
    NoSignatures,
    /// A signature by a key that is not in the trust store.
    #[error("the package is signed by key {0}, which is not trusted on this computer")]
    UnknownKey(KeyId),
    /// A signature that does not verify.
    #[error("the signature by key {0} is not valid: the package was altered or damaged")]
    BadSignature(KeyId),
    /// Two signature entries by the same key.
    #[error("the package carries more than one signature by key {0}")]
    DuplicateSignature(KeyId),
    /// The manifest names a signer that did not sign it.
    #[error("the manifest says it was signed by key {0}, but no signature by that key is present")]
    SignerMismatch(KeyId),
    /// An image's bytes do not match the signed sha256.
    #[error(
        "the image for partition {partition:?} does not match its signed checksum: the package \
         was altered or damaged"
    )]
    HashMismatch {
        /// Its partition.
        partition: String,
    },
    /// An image yielded a different number of bytes than the manifest declares.
    #[error(
        "the image for partition {partition:?} has {actual} bytes, the manifest says {expected}"
    )]
    SizeMismatch {
        /// Its partition.
        partition: String,
        /// Signed size.
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
    /// An image source file changed between hashing and copying during pack.
    #[error("the image file for partition {partition:?} changed while it was being packed")]
    ImageChanged {
        /// Its partition.
        partition: String,
    },
    /// The package file changed between opening and verifying.
    #[error("the package file changed on disk while it was being checked")]
    PackageChanged,
    /// `open_image` with an index past the last image.
    #[error("the package has {count} images; there is no image number {index}")]
    NoSuchImage {
        /// Requested index.
        index: usize,
        /// Number of images.
        count: usize,
    },
    /// A rawprogram or patch file that cannot be used.
    #[error("Qualcomm file {file:?}: {source}")]
    QualcommXml {
        /// The file, as the manifest names it.
        file: String,
        /// What is wrong with it.
        #[source]
        source: XmlError,
    },
    /// A manifest with both `[[image]]` tables and a `[qualcomm]` table.
    #[error(
        "the manifest has both [[image]] tables and a [qualcomm] table; a package is either a \
         fastboot package or a Qualcomm package"
    )]
    QualcommMixedKinds,
    /// A `[requires]` table in a Qualcomm package, whose devices report no variables.
    #[error(
        "[requires] is checked over fastboot only; a Qualcomm package cannot require \
         variables"
    )]
    RequiresOverFastbootOnly,
    /// An image larger than the partition its rawprogram entry gives it.
    #[error(
        "{file:?} needs {sectors} sectors but rawprogram entry {label:?} gives it only \
         {partition_sectors}; refusing to truncate it"
    )]
    QualcommImageTooLarge {
        /// The entry's label.
        label: String,
        /// The image file.
        file: String,
        /// Sectors the image needs.
        sectors: u64,
        /// The entry's `num_partition_sectors`.
        partition_sectors: u64,
    },
    /// A `file_sector_offset` at or past the end of its file.
    #[error(
        "rawprogram entry {label:?} starts {offset} bytes into {file:?}, which has only {size} \
         bytes"
    )]
    QualcommOffsetBeyondFile {
        /// The entry's label.
        label: String,
        /// The image file.
        file: String,
        /// The offset in bytes.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// A `sparse` attribute that disagrees with the file.
    #[error(
        "rawprogram entry {label:?} says sparse=\"{declared}\" but {file:?} {} an Android sparse \
         image",
        if *declared { "is not" } else { "is" }
    )]
    QualcommSparseMismatch {
        /// The entry's label.
        label: String,
        /// The image file.
        file: String,
        /// The `sparse` attribute.
        declared: bool,
    },
    /// A Qualcomm plan whose parts do not fit together.
    #[error("the Qualcomm plan is invalid: {0}")]
    QualcommPlanInvalid(String),
    /// A Qualcomm-only operation on a fastboot package.
    #[error("this is not a Qualcomm package")]
    NotAQualcommPackage,
    /// A key file that is not in the expected format.
    #[error("key file {path} is invalid: {reason}")]
    KeyFileInvalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `generate` would overwrite an existing key file.
    #[error("{0} already exists; refusing to overwrite a key")]
    KeyExists(PathBuf),
    /// A small-order public key, which would accept forged signatures.
    #[error("key file {0} holds a weak public key that must never be trusted")]
    WeakKey(PathBuf),
    /// Two different keys in the trust store share a key id.
    #[error("two different trusted keys share the key id {0}")]
    KeyIdCollision(KeyId),
    /// A trust root file that is not a root of the expected shape.
    #[error("the trust root {path} is invalid: {reason}")]
    RootInvalid {
        /// The root file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A root listing the same key twice.
    #[error("the trust root lists key {0} more than once")]
    RootDuplicateKey(KeyId),
    /// A root whose threshold is 0 or more than its keys.
    #[error("the trust root's threshold {threshold} is not between 1 and its {keys} keys")]
    RootThresholdInvalid {
        /// The declared threshold.
        threshold: u32,
        /// How many keys the root lists.
        keys: usize,
    },
    /// A root listing the demo key, whose secret half is public.
    #[error(
        "the trust root lists the insecure demo key; a root is trusted for real devices and \
         can never contain it"
    )]
    RootContainsDemoKey,
    /// A root not signed by enough distinct keys of a root that must approve it.
    #[error(
        "the trust root carries valid signatures by {signed} distinct keys of {by}; \
         {threshold} are required"
    )]
    RootBelowThreshold {
        /// Whose keys were counted (`"the current root"`, `"the root itself"`).
        by: &'static str,
        /// Distinct keys with a valid signature.
        signed: usize,
        /// The threshold.
        threshold: u32,
    },
    /// A signature by a key of the approving root that does not verify.
    #[error("the trust root's signature by key {0} is not valid: the root was altered or damaged")]
    RootBadSignature(KeyId),
    /// A root whose version is not above the installed one.
    #[error(
        "the trust root has version {offered}, but version {current} is installed; roots never \
         go back or repeat"
    )]
    RootRollback {
        /// The installed version.
        current: u64,
        /// The offered version.
        offered: u64,
    },
    /// `update` without an installed root to check against.
    #[error("no trust root is installed at {0}; install a first root with `flashline trust init`")]
    RootNotInstalled(PathBuf),
    /// `init` where a root is already installed.
    #[error("a trust root is already installed at {0}; replace it with `flashline trust update`")]
    RootAlreadyInstalled(PathBuf),
    /// A root past its `expires` time.
    #[error(
        "the trust root {path} (version {version}) expired at {expires}: ask your release \
         managers for a newer root and install it with `flashline trust update NEW-ROOT.json`"
    )]
    RootExpired {
        /// The root file.
        path: PathBuf,
        /// Its version.
        version: u64,
        /// When it expired.
        expires: String,
    },
    /// A trust folder whose root was removed, or replaced by an older or different one, after
    /// this station had installed a root there.
    #[error(
        "the trust root {path} is {found}, but this station installed version {installed} there \
         (recorded in {state}); a root can never be removed or rolled back: put back root.json \
         version {installed}, or install a newer one with `flashline trust update`"
    )]
    RootRolledBack {
        /// The root file.
        path: PathBuf,
        /// What lies there now (`missing`, `version 1`, `a different version 2`).
        found: String,
        /// The highest version this station installed there.
        installed: u64,
        /// The state file that recorded it.
        state: PathBuf,
    },
    /// The clock stands well before a time this station has already seen.
    #[error(
        "the clock says {now}, but this station already trusted its root at {latest} \
         (recorded in {state}); a clock set back could revive an expired trust root: set the \
         clock right and try again"
    )]
    ClockSetBack {
        /// The clock's time.
        now: String,
        /// The latest time seen.
        latest: String,
        /// The state file.
        state: PathBuf,
    },
    /// The record of installed roots cannot be read or written.
    #[error("the trust state {path} cannot be used: {reason}")]
    TrustStateInvalid {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A role of a root that is not well formed.
    #[error("the trust root's role {role:?} is invalid: {reason}")]
    RoleInvalid {
        /// The role's name.
        role: String,
        /// What is wrong.
        reason: String,
    },
    /// A package signed for a product by keys no role for that product delegates to.
    #[error(
        "the package is for {product}, but no role of the trust root lets its signer(s) sign \
         for {product} (roles for it: {roles}): ask the key holders of that role to sign it"
    )]
    OutsideRole {
        /// The package's target product.
        product: String,
        /// The roles whose patterns match the product, or `none`.
        roles: String,
    },
    /// A package signed for a product by fewer distinct keys of its role than the role's
    /// threshold.
    #[error(
        "the package is for {product}, which role {role:?} covers with a threshold of \
         {threshold} keys, but only {signed} of them signed it"
    )]
    RoleBelowThreshold {
        /// The role.
        role: String,
        /// The package's target product.
        product: String,
        /// Distinct role keys with a valid signature.
        signed: usize,
        /// The role's threshold.
        threshold: u32,
    },
    /// A Unisoc plan that does not fit its images.
    #[error("the Unisoc plan is invalid: {0}")]
    UnisocPlanInvalid(String),
    /// A manifest with more than one of `[[image]]`, `[qualcomm]`, `[unisoc]`.
    #[error("the manifest mixes [[image]], [qualcomm] and [unisoc] tables; a package is one kind")]
    UnisocMixedKinds,
    /// A vendor `.pac` file that cannot be imported.
    #[error("{}: {reason}", path.display())]
    Pac {
        /// The .pac file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl PackageError {
    /// Wraps an I/O error with the path it happened on.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PackageError::Io { path, source }
    }
}
