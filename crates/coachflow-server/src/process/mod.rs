//! The process: configuration, start-up, the timer runner, the relay's task, the periodic
//! jobs, shutdown, and the command line.

pub mod cli;
pub mod config;
pub mod health;
pub mod operations;
pub mod serve;
pub mod telemetry;
pub mod timers;
