//! The one mapping of the application's errors to `tonic::Status`, with `google.rpc`
//! details (`BadRequest` field violations, `ErrorInfo` reasons, `ResourceInfo`), kept within
//! the metadata limit every stock client accepts.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::application::{AppError, Violation};

/// `google.rpc.ErrorInfo.domain` of every error.
pub const ERROR_DOMAIN: &str = "coachflow.dev";

/// The gRPC status code of each kind of error.
pub fn code(error: &AppError) -> Code {
    match error {
        AppError::InvalidArgument(_) => Code::InvalidArgument,
        AppError::NotFound { .. } => Code::NotFound,
        AppError::PermissionDenied(_) => Code::PermissionDenied,
        AppError::FailedPrecondition { .. } | AppError::MigrationBlocked(_) => Code::FailedPrecondition,
        AppError::AlreadyExists { .. } => Code::AlreadyExists,
        AppError::Aborted { .. } => Code::Aborted,
        AppError::Unavailable(_) => Code::Unavailable,
        AppError::Internal(_) => Code::Internal,
    }
}

/// Limits that keep an error's trailers (`grpc-status`, `grpc-message` percent-encoded,
/// `grpc-status-details-bin` base64-encoded) under the 8 KiB of metadata that grpc-core and
/// grpc-java clients accept by default, however many violations there are.
mod trailer_budget {
    /// `grpc-message`, in bytes before percent-encoding (at most three times as long after).
    pub(super) const MESSAGE: usize = 384;
    /// One violation's field path and description.
    pub(super) const FIELD: usize = 256;
    pub(super) const DESCRIPTION: usize = 1024;
    /// Every violation together, encoded. With the message (which the details repeat) and
    /// the envelope the details stay under 4.9 KiB, 6.5 KiB in base64, and the whole
    /// trailer block under 7.9 KiB even when the message is all percent-encoded.
    pub(super) const VIOLATIONS: usize = 4_200;
}

/// `text` cut to at most `limit` bytes at a character boundary, with an ellipsis when cut.
fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The violations that fit the trailer budget, in order; when some do not, a last one
/// says how many more there are.
fn violations_within_budget(violations: &[Violation]) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut used = 0;
    for (index, violation) in violations.iter().enumerate() {
        let field = truncate(&violation.field, trailer_budget::FIELD);
        let description = truncate(&violation.description, trailer_budget::DESCRIPTION);
        // Two length-delimited strings inside a length-delimited message.
        let size = field.len() + description.len() + 8;
        // Keep room for the line that says how many are left out.
        if used + size + 64 > trailer_budget::VIOLATIONS && index + 1 < violations.len()
            || used + size > trailer_budget::VIOLATIONS
        {
            let left = violations.len() - index;
            kept.push((String::new(), format!("… {left} more not listed here")));
            return kept;
        }
        used += size;
        kept.push((field, description));
    }
    kept
}

/// The status message: short, so it fits any client's metadata limit. With several
/// violations it names the first and counts the rest (all of them, as many as fit, are in
/// the `google.rpc.BadRequest` detail).
fn status_message(error: &AppError) -> String {
    let message = match error {
        AppError::InvalidArgument(violations) if violations.len() > 1 => format!(
            "{} (and {} more; see the BadRequest details)",
            violations[0],
            violations.len() - 1
        ),
        other => other.to_string(),
    };
    truncate(&message, trailer_budget::MESSAGE)
}

impl From<AppError> for Status {
    fn from(error: AppError) -> Status {
        let message = status_message(&error);
        let mut details = ErrorDetails::new();
        if let AppError::InvalidArgument(violations) = &error {
            for (field, description) in violations_within_budget(violations) {
                details.add_bad_request_violation(field, description);
            }
        }
        if let AppError::MigrationBlocked(conflicts) = &error {
            for (subject, description) in violations_within_budget(conflicts) {
                details.add_precondition_failure_violation("MIGRATION", subject, description);
            }
        }
        if let AppError::NotFound { resource, name } = &error {
            details.set_resource_info(resource.as_str(), truncate(name, trailer_budget::FIELD), "", "");
        }
        details.set_error_info(error.reason(), ERROR_DOMAIN, HashMap::<String, String>::new());
        Status::with_error_details(code(&error), message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client with grpc-core's default limit counts: name + value + 32 per entry
    /// (RFC 7541 §4.1), with the message percent-encoded and the details in base64.
    fn trailer_bytes(status: &Status) -> usize {
        let message = status
            .message()
            .bytes()
            .map(|byte| if byte.is_ascii_graphic() || byte == b' ' { 1 } else { 3 })
            .sum::<usize>();
        let details = status.details().len().div_ceil(3) * 4;
        ("grpc-status".len() + 2 + 32)
            + ("grpc-message".len() + message + 32)
            + ("grpc-status-details-bin".len() + details + 32)
    }

    fn violations(count: usize, description: &str) -> AppError {
        AppError::InvalidArgument(
            (0..count)
                .map(|index| Violation {
                    field: format!("source.spec.phases[{index}].tasks[{index}].after[0]"),
                    description: format!("{description} {index}"),
                })
                .collect(),
        )
    }

    #[test]
    fn many_violations_stay_under_the_default_metadata_limit() {
        for count in [1, 14, 26, 40, 100, 10_000] {
            let status = Status::from(violations(count, "unknown task 'stakeholder_interview'"));
            assert!(
                trailer_bytes(&status) < 8_192 - 256,
                "{count}: {} bytes",
                trailer_bytes(&status)
            );
            let listed = status
                .get_details_bad_request()
                .map_or(0, |bad| bad.field_violations.len());
            if count <= 40 {
                assert_eq!(listed, count, "{count} violations must all be listed");
            } else {
                let last = status.get_details_bad_request().and_then(|bad| {
                    bad.field_violations
                        .last()
                        .map(|violation| violation.description.clone())
                });
                let more = count - (listed - 1);
                assert_eq!(last.as_deref(), Some(format!("… {more} more not listed here").as_str()));
            }
        }
    }

    #[test]
    fn the_message_names_the_first_violation_and_counts_the_rest() {
        let status = Status::from(violations(14, "unknown task"));
        assert_eq!(
            status.message(),
            "source.spec.phases[0].tasks[0].after[0]: unknown task 0 (and 13 more; see the BadRequest details)"
        );
        let status = Status::from(violations(1, "unknown task"));
        assert_eq!(
            status.message(),
            "source.spec.phases[0].tasks[0].after[0]: unknown task 0"
        );
    }

    #[test]
    fn huge_texts_are_cut_at_a_character_boundary() {
        for (count, length) in [(3, 5_000), (100, 150), (1_000, 2_000)] {
            let status = Status::from(violations(count, &"ü".repeat(length)));
            assert!(
                trailer_bytes(&status) < 8_192 - 256,
                "{count}: {} bytes",
                trailer_bytes(&status)
            );
            assert!(status.message().len() <= trailer_budget::MESSAGE);
            assert!(status.message().ends_with('…'));
        }
    }
}
