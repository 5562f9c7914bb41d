//! The Coachflow service: tonic gRPC services over the engine and the store, the timer
//! runner, configuration, tracing and metrics.

pub mod proto {
    //! Code generated from `proto/coachflow/v1` by `build.rs`.
    #![allow(missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]
    tonic::include_proto!("coachflow.v1");

    /// The encoded descriptor set of the contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coachflow_descriptor");
}

pub mod cache;
pub mod clock;
pub mod config;
pub mod convert;
pub mod core;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod serve;
pub mod services;
pub mod telemetry;
pub mod timers;
pub mod trace;
