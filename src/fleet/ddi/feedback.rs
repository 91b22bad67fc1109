//! Action feedback as hawkBit takes it, within its limits.
//!
//! hawkBit keeps at most 50 messages per action status and answers 429 to more
//! (`hawkbit.server.security.dos.maxMessagesPerActionStatus`, `DdiDeploymentBaseTest.
//! tooMuchDeploymentActionMessagesInFeedback`), and stores each message in a 512-character
//! column, splitting longer ones (`JpaActionStatus.MESSAGE_ENTRY_LENGTH`). Its characters are
//! Java's, UTF-16 code units, so a line is cut to 512 of those, on a character boundary.
//! A long trail keeps its beginning and its end (where a failure's reason is) and says how
//! many lines it left out.

use super::{ActionId, DdiError, Execution, Feedback, Outcome};
use serde::Serialize;

/// The most messages hawkBit accepts in one status.
pub const MAX_DETAILS: usize = 50;
/// The longest message hawkBit stores in one entry, in UTF-16 code units.
pub const MAX_DETAIL_CHARS: usize = 512;

/// Ends a line that was cut.
const ELLIPSIS: char = '…';

/// `lines` within hawkBit's limits: at most [`MAX_DETAILS`] lines of at most
/// [`MAX_DETAIL_CHARS`] UTF-16 code units each. Lines within the limits are kept as they are.
pub fn trim_details(lines: &[String]) -> Vec<String> {
    if lines.len() <= MAX_DETAILS {
        return lines.iter().map(|l| cut(l)).collect();
    }
    let tail = MAX_DETAILS / 2;
    let head = MAX_DETAILS - tail - 1;
    let omitted = lines.len() - head - tail;
    lines[..head]
        .iter()
        .map(|l| cut(l))
        .chain(std::iter::once(format!(
            "{ELLIPSIS} {omitted} lines left out; the full report is in storage"
        )))
        .chain(lines[lines.len() - tail..].iter().map(|l| cut(l)))
        .collect()
}

/// `line` cut to [`MAX_DETAIL_CHARS`] UTF-16 code units, ending in `…` if it was cut.
fn cut(line: &str) -> String {
    if line.encode_utf16().count() <= MAX_DETAIL_CHARS {
        return line.to_string();
    }
    let budget = MAX_DETAIL_CHARS - ELLIPSIS.len_utf16();
    let mut used = 0;
    let mut out = String::new();
    for c in line.chars() {
        used += c.len_utf16();
        if used > budget {
            break;
        }
        out.push(c);
    }
    out.push(ELLIPSIS);
    out
}

/// The JSON body of `POST …/deploymentBase/{id}/feedback` and `…/cancelAction/{id}/feedback`.
///
/// `id` is no longer read by current hawkBit (`DdiActionFeedback` has `timestamp` and
/// `status`, and ignores unknown fields) but older releases and the `hawkbit_mock` crate
/// expect it. `details` is always present, empty or not, as hawkBit's own clients send it.
#[derive(Debug, Serialize)]
pub(super) struct FeedbackBody {
    id: String,
    status: Status,
}

#[derive(Debug, Serialize)]
struct Status {
    execution: &'static str,
    result: StatusResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
    details: Vec<String>,
}

#[derive(Debug, Serialize)]
struct StatusResult {
    finished: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<Progress>,
}

#[derive(Debug, Serialize)]
struct Progress {
    cnt: u32,
    of: u32,
}

impl FeedbackBody {
    /// The body for `feedback`, or why hawkBit would refuse it (nothing is sent then).
    pub(super) fn new(action: ActionId, feedback: &Feedback) -> Result<FeedbackBody, DdiError> {
        let (execution, finished) = match feedback.execution {
            Execution::Proceeding => ("proceeding", "none"),
            Execution::Closed(Outcome::Success) => ("closed", "success"),
            Execution::Closed(Outcome::Failure) => ("closed", "failure"),
            Execution::Canceled => ("canceled", "none"),
        };
        let progress = match feedback.progress {
            None => None,
            // hawkBit reads both as Java `Integer`.
            Some((cnt, of)) if cnt <= of && of <= i32::MAX as u32 => Some(Progress { cnt, of }),
            Some((cnt, of)) => {
                return Err(DdiError::Invalid(format!(
                    "progress {cnt} of {of} (needs done ≤ total ≤ {})",
                    i32::MAX
                )))
            }
        };
        Ok(FeedbackBody {
            id: action.to_string(),
            status: Status {
                execution,
                result: StatusResult { finished, progress },
                code: feedback.code,
                details: trim_details(&feedback.details),
            },
        })
    }

    /// The body accepting a cancellation: `closed`, as hawkBit's DDI documentation asks
    /// ("to finally accept a cancellation, you must send a closed status").
    pub(super) fn cancel_accepted(action: ActionId) -> FeedbackBody {
        FeedbackBody {
            id: action.to_string(),
            status: Status {
                execution: "closed",
                result: StatusResult {
                    finished: "success",
                    progress: None,
                },
                code: None,
                details: vec![CANCEL_ACCEPTED.to_string()],
            },
        }
    }
}

/// The detail line of a cancel acknowledgement.
pub const CANCEL_ACCEPTED: &str = "flashline: cancellation accepted before any write";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_trails_pass_unchanged() {
        let lines = vec!["flashed boot".to_string(), "ünïcode ✓".to_string()];
        assert_eq!(trim_details(&lines), lines);
        assert!(trim_details(&[]).is_empty());
    }

    #[test]
    fn long_lines_are_cut_on_char_boundaries() {
        let ascii = "x".repeat(600);
        let cut_ascii = &trim_details(&[ascii])[0];
        assert_eq!(cut_ascii.encode_utf16().count(), MAX_DETAIL_CHARS);
        assert!(cut_ascii.ends_with(ELLIPSIS));

        // "😀" is two UTF-16 units and four UTF-8 bytes: no unit budget split lands inside it.
        let emoji = "😀".repeat(400);
        let cut_emoji = &trim_details(&[emoji])[0];
        assert!(cut_emoji.encode_utf16().count() <= MAX_DETAIL_CHARS);
        assert_eq!(cut_emoji.chars().filter(|&c| c == '😀').count(), 255);

        let exactly = "é".repeat(MAX_DETAIL_CHARS);
        assert_eq!(trim_details(std::slice::from_ref(&exactly))[0], exactly);
    }

    #[test]
    fn long_trails_keep_head_and_tail() {
        let lines: Vec<String> = (0..120).map(|i| format!("line {i}")).collect();
        let trimmed = trim_details(&lines);
        assert_eq!(trimmed.len(), MAX_DETAILS);
        assert_eq!(trimmed[0], "line 0");
        assert_eq!(trimmed[23], "line 23");
        assert!(trimmed[24].contains("71 lines left out"), "{}", trimmed[24]);
        assert_eq!(trimmed[25], "line 95");
        assert_eq!(trimmed[49], "line 119");
        // Trimming twice changes nothing.
        assert_eq!(trim_details(&trimmed), trimmed);
    }

    #[test]
    fn body_shapes() {
        let closed = Feedback::new(
            Execution::Closed(Outcome::Failure),
            vec!["boot: write refused".into()],
        )
        .with_code(-3)
        .with_progress(2, 5);
        let body = serde_json::to_value(FeedbackBody::new(ActionId(8), &closed).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": "8", "status": {
                "execution": "closed",
                "result": {"finished": "failure", "progress": {"cnt": 2, "of": 5}},
                "code": -3,
                "details": ["boot: write refused"]}})
        );
        let proceeding = Feedback::new(Execution::Proceeding, vec![]);
        let body =
            serde_json::to_value(FeedbackBody::new(ActionId(8), &proceeding).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": "8", "status": {
                "execution": "proceeding", "result": {"finished": "none"}, "details": []}})
        );
        let bad = Feedback::new(Execution::Proceeding, vec![]).with_progress(6, 5);
        assert!(matches!(
            FeedbackBody::new(ActionId(8), &bad),
            Err(DdiError::Invalid(_))
        ));
        let huge = Feedback::new(Execution::Proceeding, vec![]).with_progress(1, u32::MAX);
        assert!(matches!(
            FeedbackBody::new(ActionId(8), &huge),
            Err(DdiError::Invalid(_))
        ));
    }
}
