//! The store's metric names (the server describes and exports them).

/// Counter: write transactions that committed engagement changes. With group commit on
/// SQLite one holds many commands: `coachflow_commands_committed_total` over this is the
/// number of commands per transaction.
pub const COMMIT_TRANSACTIONS: &str = "coachflow_commit_transactions_total";
