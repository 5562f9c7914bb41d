//! The load generator and scenarios behind the `coachflow-bench` binary (see
//! `BENCHMARKS.md`): the real `coachflow serve` binary driven over gRPC, against
//! PostgreSQL, SQLite and RabbitMQ, measured beside pgbench on the same machine.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod lag;
pub mod load;
pub mod pgbench;
pub mod scenarios;
pub mod stats;
