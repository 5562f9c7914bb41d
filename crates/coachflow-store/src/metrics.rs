//! The store's metric names (the server describes and exports them).

/// Counter: write transactions that committed engagement changes. With group commit one
/// holds many commands: `coachflow_commands_committed_total` over this is the number of
/// commands per transaction.
pub const COMMIT_TRANSACTIONS: &str = "coachflow_commit_transactions_total";
/// Histogram: how long a batch's write transaction took, from its begin to its commit.
pub const COMMIT_BATCH_DURATION: &str = "coachflow_commit_batch_duration_seconds";
/// Histogram: how long a commit waited for its batch's transaction to begin.
pub const COMMIT_WAIT: &str = "coachflow_commit_wait_seconds";
