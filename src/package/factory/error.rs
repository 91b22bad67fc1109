//! Every way a factory image can be refused while it is turned into a package.

use std::io;
use std::path::PathBuf;

use crate::package::PackageError;

/// Why a factory image could not be packed. Each variant names the file, entry or line, so
/// that the person packing knows what to fix, and nothing has been written when it occurs.
#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    /// Reading or writing a file failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: io::Error,
    },
    /// The input is neither a zip nor a folder.
    #[error("{0} is neither a zip file nor a folder")]
    NotAFactoryImage(PathBuf),
    /// The zip is not a readable zip archive.
    #[error("{path} is not a readable zip archive: {reason}")]
    ZipInvalid {
        /// The zip.
        path: PathBuf,
        /// What the zip reader said.
        reason: String,
    },
    /// More entries than any factory image has.
    #[error("{path} has {count} entries; a factory image has far fewer (at most {max} are read)")]
    TooManyEntries {
        /// The zip.
        path: PathBuf,
        /// Entries it declares.
        count: usize,
        /// The cap.
        max: usize,
    },
    /// An entry name that could escape the folder it is extracted to, or is not plain text.
    #[error("{path} has an entry with an unsafe name {name:?}: {reason}")]
    UnsafeEntryName {
        /// The zip.
        path: PathBuf,
        /// The name, escaped for display.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two entries with one name: which one a tool extracts is up to the tool.
    #[error("{path} has two entries with the same name; refusing to guess which one is meant")]
    DuplicateEntry {
        /// The zip.
        path: PathBuf,
    },
    /// Entries share bytes in the file, the trick of overlapping-entry zip bombs.
    #[error("{path} has entries that overlap in the file (a zip bomb's trick)")]
    OverlappingEntries {
        /// The zip.
        path: PathBuf,
    },
    /// An entry declares a size beyond the caps, or one its compressed bytes cannot hold.
    #[error("{path}: entry {name:?} declares {size} bytes, {reason}")]
    EntryTooLarge {
        /// The zip.
        path: PathBuf,
        /// The entry.
        name: String,
        /// Its declared uncompressed size.
        size: u64,
        /// Which limit it breaks.
        reason: String,
    },
    /// An entry inflated to more bytes than it declared: a zip bomb, or a damaged zip.
    #[error("{path}: entry {name:?} inflates past its declared {declared} bytes (a zip bomb or a damaged zip)")]
    EntryOverrun {
        /// The zip.
        path: PathBuf,
        /// The entry.
        name: String,
        /// Its declared uncompressed size.
        declared: u64,
    },
    /// An entry ended before its declared size, or its bytes failed the zip's CRC.
    #[error("{path}: entry {name:?} is damaged: {reason}")]
    EntryDamaged {
        /// The zip.
        path: PathBuf,
        /// The entry.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// Extraction would exceed the total cap.
    #[error("{path}: the images add up to more than {max} bytes")]
    TotalTooLarge {
        /// The zip.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// An entry that is encrypted or compressed in a way flashline does not read.
    #[error(
        "{path}: entry {name:?} is {what}; factory images use only stored and deflated entries"
    )]
    EntryUnsupported {
        /// The zip.
        path: PathBuf,
        /// The entry.
        name: String,
        /// Encrypted, or the compression method.
        what: String,
    },
    /// Neither an outer factory zip (`image-*.zip` inside) nor an image zip or product-out
    /// folder (`android-info.txt` inside).
    #[error(
        "{0} does not look like a factory image: it holds neither an image-<device>-<build>.zip \
         nor an android-info.txt"
    )]
    UnknownLayout(PathBuf),
    /// More than one file could be the one meant.
    #[error("{path} holds more than one {what}: {first:?} and {second:?}")]
    Ambiguous {
        /// The zip or folder.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// One candidate.
        first: String,
        /// Another candidate.
        second: String,
    },
    /// A file the plan needs is not in the factory image.
    #[error("the factory image has no {file}, which {needed_by}")]
    MissingFile {
        /// The file.
        file: String,
        /// Who needs it.
        needed_by: String,
    },
    /// A text file is larger than any real one.
    #[error("{file} is larger than {max} bytes; it is not a real {file}")]
    TextTooLarge {
        /// The file.
        file: String,
        /// The cap.
        max: u64,
    },
    /// A text file is not UTF-8 (android-info.txt and fastboot-info.txt are ASCII).
    #[error("{file} is not text")]
    NotText {
        /// The file.
        file: String,
    },
    /// A line of android-info.txt that flashline cannot carry into a package.
    #[error("android-info.txt line {line}: {reason}: {text:?}")]
    AndroidInfo {
        /// 1-based line number.
        line: usize,
        /// The line, shortened and escaped for display.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// android-info.txt names no board, so the package would fit any device.
    #[error("android-info.txt has no `require board=` line, so the package would name no device")]
    NoBoard,
    /// A line of fastboot-info.txt that is not one of Google's tasks.
    #[error("fastboot-info.txt line {line}: {reason}: {text:?}")]
    FastbootInfo {
        /// 1-based line number.
        line: usize,
        /// The line, shortened and escaped for display.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The version or name could not be derived and was not given.
    #[error("{0}")]
    Naming(String),
    /// The package itself could not be written.
    #[error(transparent)]
    Package(#[from] PackageError),
}

impl FactoryError {
    /// Maps an I/O error on `path`.
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> FactoryError {
        let path = path.into();
        move |source| FactoryError::Io { path, source }
    }
}

/// A line of an input file as it is shown in an error: at most 80 characters, with control
/// characters escaped by `{:?}` formatting at the call site.
pub(crate) fn shown(line: &str) -> String {
    line.chars().take(80).collect()
}
