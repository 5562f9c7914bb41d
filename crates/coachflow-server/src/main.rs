//! The `coachflow` binary.

/// mimalloc rather than the system's malloc: see BENCHMARKS.md ("The allocator, and JSON without trees").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    coachflow_server::process::cli::main()
}
