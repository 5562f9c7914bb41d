//! The `coachflow` binary.

fn main() -> std::process::ExitCode {
    coachflow_server::process::cli::main()
}
