//! The envelope a report is stored in: the report's exact bytes, sealed by the station key.
//!
//! ```json
//! {
//!   "format": "flashline-report-envelope-v1",
//!   "key": "reports/S12/a1b2…/20261206T101500Z-7.json",
//!   "station_key_id": "3f9c…",
//!   "station_public_key": "<32 bytes, hex>",
//!   "report": "<the report's JSON text, exactly as the station wrote it>",
//!   "seal": "flashline-seal-ed25519-v1 3f9c… <signature, hex>\n"
//! }
//! ```
//!
//! The report is kept as a string rather than as nested JSON so that its bytes, which the
//! seal covers, survive any reader's JSON round trip. The seal covers the object key as
//! well (length-prefixed, then the report), so a sealed report copied to another key (to
//! pass one device's report off as another's) is refused. The public key travels along for
//! convenience only: a reader checks the envelope against the public key it enrolled for
//! that station (`flashline reports pending --json` prints it), never against the one
//! inside the envelope.

use serde::{Deserialize, Serialize};

use crate::engine::station::{check_report_seal, StationKey};

/// The `format` of an envelope this version writes and reads.
pub const FORMAT: &str = "flashline-report-envelope-v1";

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Always [`FORMAT`].
    pub format: String,
    /// The object key the report was written under.
    pub key: String,
    /// The sealing station key's id (first 8 bytes of the SHA-256 of its public half, hex).
    pub station_key_id: String,
    /// The sealing station key's public half, hex.
    pub station_public_key: String,
    /// The report's JSON text.
    pub report: String,
    /// The station key's report seal over [`signed_bytes`] of key and report.
    pub seal: String,
}

/// Why an envelope does not hold.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Not an envelope this version reads.
    #[error("not a flashline report envelope: {0}")]
    Format(String),
    /// Stored under another key than the one it was sealed for.
    #[error("the envelope was sealed for {sealed_for}, but is stored at {stored_at}")]
    WrongKey {
        /// The key inside the envelope.
        sealed_for: String,
        /// Where it was read.
        stored_at: String,
    },
    /// Sealed by a station key other than the one expected.
    #[error("the envelope names station key {found}, not the enrolled key {expected}")]
    OtherStation {
        /// The key id inside the envelope.
        found: String,
        /// The enrolled key's public half.
        expected: String,
    },
    /// The seal does not hold.
    #[error("the report's seal does not hold: {0}")]
    Seal(String),
}

/// The bytes a report seal covers: the key's length (8 bytes, big-endian), the key, the
/// report. The length prefix keeps every (key, report) pair distinct.
pub fn signed_bytes(key: &str, report: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8 + key.len() + report.len());
    bytes.extend_from_slice(&(key.len() as u64).to_be_bytes());
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(report);
    bytes
}

/// Seals `report` (UTF-8 JSON text, checked by the caller) for `key`; the envelope's JSON.
pub fn seal(station: &StationKey, key: &str, report: &str) -> Vec<u8> {
    let envelope = Envelope {
        format: FORMAT.to_string(),
        key: key.to_string(),
        station_key_id: station.id(),
        station_public_key: station.public_key(),
        report: report.to_string(),
        seal: station.seal_report(&signed_bytes(key, report.as_bytes())),
    };
    let mut bytes = serde_json::to_vec_pretty(&envelope).expect("envelopes serialise");
    bytes.push(b'\n');
    bytes
}

/// Reads an envelope without checking its seal (the outbox reads back its own files).
pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Format(e.to_string()))?;
    if envelope.format != FORMAT {
        return Err(EnvelopeError::Format(format!(
            "format {:?}, expected {FORMAT:?}",
            envelope.format
        )));
    }
    Ok(envelope)
}

/// Checks the envelope read at object key `key` against the public key (hex) enrolled for
/// the station that wrote it: the right format, sealed for this very key, by that station,
/// over exactly this report. Returns the envelope; its `report` is then the station's.
pub fn verify_envelope(
    key: &str,
    bytes: &[u8],
    station_public_key: &str,
) -> Result<Envelope, EnvelopeError> {
    let envelope = parse(bytes)?;
    if envelope.key != key {
        return Err(EnvelopeError::WrongKey {
            sealed_for: envelope.key,
            stored_at: key.to_string(),
        });
    }
    if !envelope
        .station_public_key
        .eq_ignore_ascii_case(station_public_key)
    {
        return Err(EnvelopeError::OtherStation {
            found: envelope.station_key_id,
            expected: station_public_key.to_string(),
        });
    }
    check_report_seal(
        station_public_key,
        &signed_bytes(&envelope.key, envelope.report.as_bytes()),
        envelope.seal.as_bytes(),
    )
    .map_err(EnvelopeError::Seal)?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_envelopes_verify_and_tampering_is_refused() {
        let home = tempfile::tempdir().unwrap();
        let station = StationKey::open_or_create(&home.path().join("station.key")).unwrap();
        let other = StationKey::open_or_create(&home.path().join("other.key")).unwrap();
        let bytes = seal(&station, "reports/S/t/j.json", r#"{"outcome":"success"}"#);
        let pk = station.public_key();
        let env = verify_envelope("reports/S/t/j.json", &bytes, &pk).unwrap();
        assert_eq!(env.report, r#"{"outcome":"success"}"#);

        let moved = verify_envelope("reports/S/u/j.json", &bytes, &pk).unwrap_err();
        assert!(matches!(moved, EnvelopeError::WrongKey { .. }), "{moved}");
        let foreign = verify_envelope("reports/S/t/j.json", &bytes, &other.public_key());
        assert!(matches!(foreign, Err(EnvelopeError::OtherStation { .. })));

        let mut changed = parse(&bytes).unwrap();
        changed.report = r#"{"outcome":"failure"}"#.into();
        let changed = serde_json::to_vec(&changed).unwrap();
        let err = verify_envelope("reports/S/t/j.json", &changed, &pk).unwrap_err();
        assert!(matches!(err, EnvelopeError::Seal(_)), "{err}");
        // A backup seal over the same bytes never passes as a report seal.
        let mut backup_sealed = parse(&bytes).unwrap();
        backup_sealed.seal = station.seal(&signed_bytes(
            &backup_sealed.key,
            backup_sealed.report.as_bytes(),
        ));
        let backup_sealed = serde_json::to_vec(&backup_sealed).unwrap();
        assert!(verify_envelope("reports/S/t/j.json", &backup_sealed, &pk).is_err());
    }
}
