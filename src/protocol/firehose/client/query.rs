//! Commands that ask the device something (digest, storage info) and the lenient
//! scanners that pick the answer out of its logs or attributes.

use super::*;

impl<T: Transport> FirehoseClient<T> {
    /// The SHA-256 of `range` as the device computes it. The digest may come in a log line
    /// (`Digest <64 hex>`) or as a response attribute; both are accepted.
    pub fn sha256_digest(&mut self, range: &SectorRange) -> Result<[u8; 32], FirehoseError> {
        let command = Command::GetSha256Digest(*range);
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command)
                .keeping(|line| line.to_ascii_lowercase().contains("digest"));
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.finish)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            let from_attribute = response
                .attributes
                .iter()
                .filter(|(k, _)| k.to_ascii_lowercase().contains("digest"))
                .find_map(|(_, v)| find_digest(v));
            let from_log = |exchange: &Exchange| exchange.kept.iter().find_map(|l| find_digest(l));
            client.drain_for_answer(&mut exchange, |exchange| {
                from_attribute.is_some() || from_log(exchange).is_some()
            })?;
            from_attribute
                .or_else(|| from_log(&exchange))
                .ok_or_else(|| exchange.protocol("the ACK came without a SHA-256 digest".into()))
        })
    }

    /// The geometry of physical partition `lun`, parsed from the JSON the device logs.
    pub fn storage_info(&mut self, lun: u32) -> Result<StorageInfo, FirehoseError> {
        let command = Command::GetStorageInfo { lun };
        self.guarded(&command, |client| {
            let mut exchange =
                Exchange::new(&command).keeping(|line| line.contains("total_blocks"));
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.response)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            let info = |exchange: &Exchange| {
                exchange
                    .kept
                    .iter()
                    .find_map(|line| parse_storage_info(line))
            };
            client.drain_for_answer(&mut exchange, |exchange| info(exchange).is_some())?;
            info(&exchange).ok_or_else(|| {
                exchange.protocol("no log line with total_blocks and a non-zero block_size".into())
            })
        })
    }
}

/// The 64 hex digits that follow `digest` (any case, optional `0x`) in `text`.
pub(super) fn find_digest(text: &str) -> Option<[u8; 32]> {
    let lower = text.to_ascii_lowercase();
    let after = lower.find("digest").map_or(lower.as_str(), |i| &lower[i..]);
    after
        .split(|c: char| !c.is_ascii_hexdigit())
        .find_map(|word| {
            let word = word.strip_prefix("0x").unwrap_or(word);
            let mut digest = [0u8; 32];
            (word.len() == 64 && hex::decode_to_slice(word, &mut digest).is_ok()).then_some(digest)
        })
}

/// Reads the numbers of a `{"storage_info": {"total_blocks": …, "block_size": …}}` log line
/// with a small scanner (the line is not trusted to be valid JSON).
pub(super) fn parse_storage_info(line: &str) -> Option<StorageInfo> {
    let total_blocks = json_value(line, "total_blocks")?.parse().ok()?;
    let block_size = json_value(line, "block_size")?
        .parse()
        .ok()
        .filter(|&b| b > 0)?;
    let number = |key| json_value(line, key).and_then(|v| v.parse().ok());
    let text = |key| json_value(line, key).map(str::to_string);
    Some(StorageInfo {
        total_blocks,
        block_size,
        page_size: number("page_size"),
        num_physical: number("num_physical"),
        mem_type: text("mem_type"),
        prod_name: text("prod_name"),
        fw_version: text("fw_version"),
    })
}

/// The value after `"key":` in `text`: a quoted string's content, or a bare token.
pub(super) fn json_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let quoted = format!("\"{key}\"");
    let rest = text[text.find(&quoted)? + quoted.len()..].trim_start();
    let rest = rest.strip_prefix(':')?.trim_start();
    if let Some(string) = rest.strip_prefix('"') {
        return string.split('"').next();
    }
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}
