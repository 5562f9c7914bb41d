//! The Coachflow service, in three layers a reader can see in its folders: `transport`
//! (tonic services, authentication, proto ⇄ domain conversion, what each caller may see),
//! `application` (commands and queries over domain types) and `process` (configuration,
//! start-up, the timer runner, the relay's task, shutdown, the command line). Arrows run
//! transport → application → store and engine, never back. `clock`, `metrics` and `trace`
//! are shared by all three.

pub mod proto {
    //! Code generated from `proto/` by `build.rs`, in modules that mirror the packages (the
    //! generated code refers across packages by relative paths); `coachflow.v1` is also
    //! here at the top.
    #![allow(missing_debug_implementations, unreachable_pub, clippy::all, clippy::pedantic)]

    pub mod coachflow {
        pub mod v1 {
            tonic::include_proto!("coachflow.v1");
        }
    }

    /// `google.longrunning` and the `google.rpc.Status` it carries (AIP-151).
    pub mod google {
        pub mod longrunning {
            tonic::include_proto!("google.longrunning");
        }
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }

    pub use coachflow::v1::*;

    /// The encoded descriptor set of the contract, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("coachflow_descriptor");
}

pub mod application;
pub mod clock;
pub mod metrics;
pub mod process;
pub mod trace;
pub mod transport;

pub use process::{config, serve, telemetry, timers};
pub use transport::convert;

pub use coachflow_store::hex;

/// The optimistic-concurrency token of an engagement at `sequence`.
pub fn etag(sequence: u64) -> String {
    format!("\"{sequence}\"")
}

/// RFC 3339 in UTC with `Z`, as replies and messages write times.
pub fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}
