//! Identifiers the engine mints or checks: person, goal and commitment ids, and the ids of
//! task instances and timers.

/// Person ids are opaque references into the customer's directory: letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit, at most 128 characters. Keeping them this
/// narrow keeps e-mail addresses and names out of ids that travel in events.
pub fn is_valid_person_id(id: &str) -> bool {
    is_valid_reference(id, 128)
}

/// Goal and commitment ids, chosen by the caller: the same alphabet, at most 64 characters.
pub fn is_valid_record_id(id: &str) -> bool {
    is_valid_reference(id, 64)
}

fn is_valid_reference(id: &str, max_len: usize) -> bool {
    let mut characters = id.chars();
    id.len() <= max_len
        && characters.next().is_some_and(|first| first.is_ascii_alphanumeric())
        && characters.all(|character| character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-'))
}

pub(crate) const PERSON_ID_RULE: &str = "must be an opaque id of letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters";
pub(crate) const RECORD_ID_RULE: &str =
    "must be letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64 characters";

/// The id of a task instance: the task key, then `@<iteration>` when its phase is being run
/// again (a loop), `#<n>` for the n-th occurrence of a repeating task, `~<person>` for the
/// instance of one person of a `for_each` role. None of these characters can occur in a
/// key or a person id, so the id is unambiguous.
pub fn task_instance_id(task: &str, iteration: u32, occurrence: Option<u32>, subject: Option<&str>) -> String {
    let mut id = String::from(task);
    if iteration > 1 {
        id.push('@');
        id.push_str(&iteration.to_string());
    }
    if let Some(occurrence) = occurrence {
        id.push('#');
        id.push_str(&occurrence.to_string());
    }
    if let Some(subject) = subject {
        id.push('~');
        id.push_str(subject);
    }
    id
}

/// The id of the occurrence series of a repeating task in one iteration of its phase.
pub fn series_id(task: &str, iteration: u32) -> String {
    task_instance_id(task, iteration, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_carry_iteration_occurrence_and_person() {
        assert_eq!(task_instance_id("idp", 1, None, None), "idp");
        assert_eq!(task_instance_id("calls", 2, Some(3), None), "calls@2#3");
        assert_eq!(task_instance_id("interview", 1, None, Some("p-7")), "interview~p-7");
    }

    #[test]
    fn person_ids_are_opaque_references() {
        assert!(is_valid_person_id("emp.4412"));
        assert!(is_valid_person_id("6f1c2a9e-6f4b-4d0e-9d2c-1b7f3c0a5e11"));
        assert!(!is_valid_person_id("jane@example.com"));
        assert!(!is_valid_person_id(""));
        assert!(!is_valid_person_id("-x"));
        assert!(!is_valid_person_id(&"a".repeat(129)));
    }
}
