//! The database's own limit: `pgbench` running a single-row INSERT per transaction at a
//! given concurrency, on a fresh database of the same PostgreSQL server.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use coachflow_integration_tests::{Backend, TestDatabase};

/// The script: one autocommitted INSERT of a row about the size of an event's.
const SCRIPT: &str = "INSERT INTO bench_insert (engagement, payload) VALUES ('e-' || :client_id, \
                      repeat('x', 200));\n";

/// What one `pgbench` run measured.
#[derive(Debug, Clone, Copy)]
pub struct PgbenchRun {
    pub clients: usize,
    pub tps: f64,
    pub latency_ms: f64,
}

/// Runs `pgbench` for `duration` with `clients` connections (and up to two threads, one per
/// core) on a fresh database; returns its transactions per second.
pub async fn run(clients: usize, duration: Duration) -> anyhow::Result<PgbenchRun> {
    let database = TestDatabase::create(Backend::Postgres).await;
    let url = database.url().to_owned();
    let script = std::env::temp_dir().join(format!("coachflow-pgbench-{}.sql", std::process::id()));
    std::fs::write(&script, SCRIPT).with_context(|| format!("cannot write {}", script.display()))?;
    let setup = Command::new("psql")
        .args([
            &url,
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE bench_insert (id bigserial PRIMARY KEY, engagement text NOT NULL, \
             payload text NOT NULL, at timestamptz NOT NULL DEFAULT now())",
        ])
        .output()
        .context("cannot run psql (install postgresql-client)")?;
    if !setup.status.success() {
        bail!("psql failed: {}", String::from_utf8_lossy(&setup.stderr));
    }
    let threads = clients.clamp(1, 2);
    let output = tokio::task::spawn_blocking({
        let script = script.clone();
        move || {
            Command::new("pgbench")
                .args(["-n", "-c", &clients.to_string(), "-j", &threads.to_string()])
                .args(["-T", &duration.as_secs().max(1).to_string()])
                .arg("-f")
                .arg(&script)
                .arg(&url)
                .output()
        }
    })
    .await?
    .context("cannot run pgbench (install postgresql-contrib or postgresql-client)")?;
    let _ = std::fs::remove_file(&script);
    drop(database);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    }
    parse(&stdout, clients)
}

fn parse(report: &str, clients: usize) -> anyhow::Result<PgbenchRun> {
    let value_after = |prefix: &str| -> Option<f64> {
        report
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse().ok())
    };
    let tps = value_after("tps = ").with_context(|| format!("no tps in the pgbench report:\n{report}"))?;
    let latency_ms = value_after("latency average = ").unwrap_or(f64::NAN);
    Ok(PgbenchRun {
        clients,
        tps,
        latency_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps_and_latency_from_the_report() {
        let report = "transaction type: /tmp/x.sql\nnumber of clients: 64\nlatency average = 8.761 ms\n\
                      initial connection time = 80.1 ms\ntps = 7304.986115 (without initial connection time)\n";
        let run = parse(report, 64).unwrap();
        assert_eq!(run.clients, 64);
        assert!((run.tps - 7304.986115).abs() < 1e-6);
        assert!((run.latency_ms - 8.761).abs() < 1e-9);
        assert!(parse("nothing", 1).is_err());
    }
}
