//! The real `coachflow serve` process: built once per test process, started on port 0 with
//! a fresh database and a clock file, stopped with SIGTERM or SIGKILL, restarted on the
//! same database and clock.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use coachflow_store::testing::{PgDatabaseGuard, TempDirGuard, fresh_postgres_url};
use tonic::transport::{Channel, Endpoint};

use crate::identity::TestIssuer;

/// Where every test's clock starts: a Monday morning.
pub const START_TIME: &str = "2026-03-02T08:00:00Z";

/// How long a server may take from spawn to its ready line (builds and migrations are slow
/// on a loaded two-core machine).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub fn start_time() -> DateTime<Utc> {
    START_TIME.parse().expect("START_TIME is RFC 3339")
}

/// The database a server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The `coachflow` binary: `COACHFLOW_BIN`, or built once per test process with the test's
/// own profile and found next to the test executable's `deps` directory.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("COACHFLOW_BIN") {
            return PathBuf::from(path);
        }
        let profile_dir = profile_dir();
        let profile = profile_dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("the profile directory has a name")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(&cargo);
        command.args(["build", "-p", "coachflow-server", "--bin", "coachflow"]);
        match profile.as_str() {
            "debug" => {}
            "release" => {
                command.arg("--release");
            }
            other => {
                command.args(["--profile", other]);
            }
        }
        let output = command
            .output()
            .unwrap_or_else(|error| panic!("cannot run {cargo}: {error}"));
        assert!(
            output.status.success(),
            "cargo build -p coachflow-server --bin coachflow failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let binary = profile_dir.join("coachflow");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// `target/<profile>`, from the test executable at `target/<profile>/deps/<test>` (or a
/// binary such as `coachflow-bench` at `target/<profile>/<name>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .unwrap_or_else(|| panic!("{} is not in target/<profile>", exe.display()));
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// Where server logs go: `target/tmp/coachflow-it`, kept when a test fails.
fn log_dir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .map_or_else(std::env::temp_dir, |target| target.join("tmp"))
        .join("coachflow-it");
    std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    dir
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh database, removed when the last server using it is gone.
#[derive(Debug)]
pub struct TestDatabase {
    backend: Backend,
    url: String,
    _guard: DatabaseGuard,
}

#[derive(Debug)]
enum DatabaseGuard {
    Sqlite(#[allow(dead_code)] TempDirGuard),
    Postgres(#[allow(dead_code)] PgDatabaseGuard),
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Arc<TestDatabase> {
        let database = match backend {
            Backend::Sqlite => {
                let guard = TempDirGuard::new();
                TestDatabase {
                    backend,
                    url: guard.url().to_owned(),
                    _guard: DatabaseGuard::Sqlite(guard),
                }
            }
            Backend::Postgres => {
                let (url, guard) = fresh_postgres_url().await;
                TestDatabase {
                    backend,
                    url,
                    _guard: DatabaseGuard::Postgres(guard),
                }
            }
        };
        Arc::new(database)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The time the servers read: an RFC 3339 timestamp in a file, rewritten atomically (a
/// half-written file would make the server fall back to the machine's clock).
#[derive(Debug)]
pub struct TestClock {
    path: PathBuf,
    now: Mutex<DateTime<Utc>>,
    _dir: TempDirGuard,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Arc<TestClock> {
        let dir = TempDirGuard::new();
        let clock = TestClock {
            path: dir.path().join("clock"),
            now: Mutex::new(start),
            _dir: dir,
        };
        clock.set(start);
        Arc::new(clock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves the time to `at` (backwards too, though tests have no reason to).
    pub fn set(&self, at: DateTime<Utc>) {
        let mut now = self.now.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let staging = self.path.with_extension("next");
        std::fs::write(&staging, at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|error| panic!("cannot write {}: {error}", staging.display()));
        std::fs::rename(&staging, &self.path)
            .unwrap_or_else(|error| panic!("cannot move the clock file into place: {error}"));
        *now = at;
    }

    /// Moves the time forward by `by`; returns the new time.
    pub fn advance(&self, by: chrono::Duration) -> DateTime<Utc> {
        let at = self.now() + by;
        self.set(at);
        at
    }
}

/// Who a server trusts: the tests' identity provider (the default), or nobody (local mode).
#[derive(Debug, Clone)]
enum Identity {
    Issuer(Option<Arc<TestIssuer>>),
    Local,
}

/// How to start a server: its backend, or the database, clock and identity provider of
/// another server, and extra settings.
#[derive(Debug)]
pub struct ServerBuilder {
    backend: Backend,
    database: Option<Arc<TestDatabase>>,
    clock: Option<Arc<TestClock>>,
    identity: Identity,
    settings: Vec<(String, String)>,
    database_url: Option<String>,
    metrics: bool,
    client_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl ServerBuilder {
    /// A setting by its dotted path, passed as `--set PATH=VALUE`.
    pub fn set(mut self, path: &str, value: &str) -> ServerBuilder {
        self.settings.push((path.to_owned(), value.to_owned()));
        self
    }

    /// Reaches the database at `url` instead of its own URL: the same database through a
    /// [`crate::proxy::FaultProxy`], say.
    pub fn database_url(mut self, url: String) -> ServerBuilder {
        self.database_url = Some(url);
        self
    }

    /// Runs on `database` (made by the test, to reach it another way too).
    pub fn on_database(mut self, database: &Arc<TestDatabase>) -> ServerBuilder {
        self.backend = database.backend();
        self.database = Some(Arc::clone(database));
        self
    }

    /// Runs on the same database and clock as `other`, trusting the same issuer.
    pub fn sharing_with(mut self, other: &TestServer) -> ServerBuilder {
        self.backend = other.database.backend();
        self.database = Some(Arc::clone(&other.database));
        self.clock = Some(Arc::clone(&other.clock));
        self.identity = match &other.issuer {
            Some(issuer) => Identity::Issuer(Some(Arc::clone(issuer))),
            None => Identity::Local,
        };
        self
    }

    /// Trusts `issuer` (instead of a new one of its own).
    pub fn trusting(mut self, issuer: &Arc<TestIssuer>) -> ServerBuilder {
        self.identity = Identity::Issuer(Some(Arc::clone(issuer)));
        self
    }

    /// Connects to the server over TLS with `config` (for a server with `server.tls.*`).
    pub fn client_tls(mut self, config: tonic::transport::ClientTlsConfig) -> ServerBuilder {
        self.client_tls = Some(config);
        self
    }

    /// Runs in local mode: no issuer, loopback only, a call without a token is the local
    /// administrator.
    pub fn local_mode(mut self) -> ServerBuilder {
        self.identity = Identity::Local;
        self
    }

    /// Starts without the metrics endpoint (`metrics=off`).
    pub fn without_metrics(mut self) -> ServerBuilder {
        self.metrics = false;
        self
    }

    pub async fn start(self) -> TestServer {
        let database = match self.database {
            Some(database) => database,
            None => TestDatabase::create(self.backend).await,
        };
        let clock = self.clock.unwrap_or_else(|| TestClock::new(start_time()));
        let issuer = match self.identity {
            Identity::Issuer(issuer) => Some(issuer.unwrap_or_else(TestIssuer::new)),
            Identity::Local => None,
        };
        let test = std::thread::current()
            .name()
            .unwrap_or("test")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_', "_");
        let log = log_dir().join(format!("{test}-{}.log", unique_suffix()));
        let mut server = TestServer {
            process: None,
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: None,
            database,
            clock,
            issuer,
            settings: self.settings,
            database_url: self.database_url,
            metrics_enabled: self.metrics,
            client_tls: self.client_tls,
            log,
            channel: None,
        };
        server.spawn().await;
        server
    }
}

/// A running `coachflow serve`. Dropping it kills the process.
#[derive(Debug)]
pub struct TestServer {
    process: Option<Child>,
    grpc: SocketAddr,
    metrics: Option<SocketAddr>,
    database: Arc<TestDatabase>,
    clock: Arc<TestClock>,
    /// The identity provider it trusts; `None` in local mode.
    issuer: Option<Arc<TestIssuer>>,
    settings: Vec<(String, String)>,
    database_url: Option<String>,
    metrics_enabled: bool,
    client_tls: Option<tonic::transport::ClientTlsConfig>,
    log: PathBuf,
    channel: Option<Channel>,
}

impl TestServer {
    /// A server on a fresh database of `backend`, with the clock at [`START_TIME`].
    pub async fn start(backend: Backend) -> TestServer {
        TestServer::builder(backend).start().await
    }

    pub fn builder(backend: Backend) -> ServerBuilder {
        ServerBuilder {
            backend,
            database: None,
            clock: None,
            identity: Identity::Issuer(None),
            settings: Vec::new(),
            database_url: None,
            metrics: true,
            client_tls: None,
        }
    }

    /// The identity provider the server trusts; `None` in local mode.
    pub fn issuer(&self) -> Option<&Arc<TestIssuer>> {
        self.issuer.as_ref()
    }

    pub fn backend(&self) -> Backend {
        self.database.backend()
    }

    pub fn database(&self) -> &Arc<TestDatabase> {
        &self.database
    }

    pub fn clock(&self) -> &Arc<TestClock> {
        &self.clock
    }

    pub fn grpc_address(&self) -> SocketAddr {
        self.grpc
    }

    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// A channel to the server; clones share one HTTP/2 connection.
    pub fn channel(&self) -> Channel {
        self.channel.clone().expect("the server is running")
    }

    /// Sets the servers' time.
    pub fn set_time(&self, at: DateTime<Utc>) {
        self.clock.set(at);
    }

    /// Moves the servers' time forward; returns the new time.
    pub fn advance(&self, by: chrono::Duration) -> DateTime<Utc> {
        self.clock.advance(by)
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn note_in_log(&self, note: &str) {
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(&self.log) {
            let _ = writeln!(file, "=== harness: {note} ===");
        }
    }

    async fn spawn(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| self.database.url().to_owned());
        self.note_in_log(&format!("starting on {database_url} at {}", self.clock.now()));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|error| panic!("cannot open {}: {error}", self.log.display()));
        let mut command = Command::new(binary());
        // Every COACHFLOW_* variable is a setting to the server and an unknown one is
        // refused; the test's own (COACHFLOW_TEST_POSTGRES_URL, COACHFLOW_BIN) must not leak.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("COACHFLOW_") {
                command.env_remove(name);
            }
        }
        command
            .env("NO_COLOR", "1")
            .arg("serve")
            .args(["--database-url", &database_url])
            .args(["--listen", "127.0.0.1:0"])
            .args([
                "--metrics-listen",
                if self.metrics_enabled { "127.0.0.1:0" } else { "" },
            ])
            .args(["--set", "timers.poll_interval=50ms"])
            .arg("--set")
            .arg(format!("clock_file={}", self.clock.path().display()));
        let trust = self.issuer.as_ref().map(|issuer| issuer.settings()).unwrap_or_default();
        for (path, value) in trust.iter().chain(&self.settings) {
            command.arg("--set").arg(format!("{path}={value}"));
        }
        let mut child = command
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary().display()));

        // The first stdout line says where the server listens; later lines go to the log.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready_sender, mut ready) = tokio::sync::oneshot::channel::<String>();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut sender = Some(ready_sender);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("coachflow ready ")
                    && let Some(sender) = sender.take()
                {
                    let _ = sender.send(line);
                    continue;
                }
                if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&log) {
                    let _ = writeln!(file, "[stdout] {line}");
                }
            }
        });
        self.process = Some(child);

        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let line = loop {
            match tokio::time::timeout(Duration::from_millis(100), &mut ready).await {
                Ok(Ok(line)) => break line,
                Ok(Err(_)) => {
                    let status = self.wait_for_exit(Duration::from_secs(5)).await;
                    panic!(
                        "the server closed stdout without a ready line (exit: {status:?}); log {}:\n{}",
                        self.log.display(),
                        self.log_tail(40)
                    );
                }
                Err(_) => {}
            }
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "the server exited before it was ready ({status}); log {}:\n{}",
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "the server was not ready within {READY_TIMEOUT:?}; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(40)
                );
            }
        };
        let (grpc, metrics) = parse_ready_line(&line);
        assert_eq!(metrics.is_some(), self.metrics_enabled, "ready line: {line}");
        self.grpc = grpc;
        self.metrics = metrics;
        let mut endpoint = Endpoint::from_shared(format!(
            "{}://{grpc}",
            if self.client_tls.is_some() { "https" } else { "http" }
        ))
        .expect("a valid URI")
        .connect_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.client_tls {
            endpoint = endpoint.tls_config(tls.clone()).expect("a TLS configuration");
        }
        let channel = endpoint
            .connect()
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {grpc}: {error}"));
        self.channel = Some(channel);
    }

    fn try_exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.process.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot query the server process: {error}"))
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                self.process = None;
                self.channel = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit; panics (after
    /// killing it) if it does not.
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let pid = self.pid().expect("the server is running");
        self.note_in_log("SIGTERM");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
        assert!(sent.success(), "kill -TERM {pid} failed");
        match self.wait_for_exit(within).await {
            Some(status) => status,
            None => {
                self.kill9().await;
                panic!(
                    "the server did not exit within {within:?} of SIGTERM; log {}:\n{}",
                    self.log.display(),
                    self.log_tail(40)
                );
            }
        }
    }

    /// Kills the process with SIGKILL: no chance to finish anything.
    pub async fn kill9(&mut self) {
        self.note_in_log("SIGKILL");
        if let Some(child) = self.process.as_mut() {
            let _ = child.kill();
        }
        let status = self.wait_for_exit(Duration::from_secs(10)).await;
        assert!(status.is_some(), "the server survived SIGKILL");
    }

    /// Starts the server again on the same database, clock and settings (after
    /// [`TestServer::terminate`] or [`TestServer::kill9`]); it listens on new ports, so
    /// clients must be made again.
    pub async fn restart(&mut self) {
        if self.process.is_some() {
            self.terminate(Duration::from_secs(30)).await;
        }
        self.spawn().await;
    }
}

fn parse_ready_line(line: &str) -> (SocketAddr, Option<SocketAddr>) {
    let mut grpc = None;
    let mut metrics = None;
    for field in line.trim().split(' ').skip(2) {
        match field.split_once('=') {
            Some(("grpc", address)) => grpc = Some(address.parse().unwrap_or_else(|_| panic!("ready line: {line}"))),
            Some(("metrics", "off")) => {}
            Some(("metrics", address)) => {
                metrics = Some(address.parse().unwrap_or_else(|_| panic!("ready line: {line}")));
            }
            _ => panic!("unexpected field '{field}' in the ready line: {line}"),
        }
    }
    (
        grpc.unwrap_or_else(|| panic!("no grpc= in the ready line: {line}")),
        metrics,
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- server log {} (last 60 lines) ---\n{}\n--- end of server log ---",
                self.log.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines_parse() {
        let (grpc, metrics) = parse_ready_line("coachflow ready grpc=127.0.0.1:4000 metrics=127.0.0.1:4001");
        assert_eq!(grpc.port(), 4000);
        assert_eq!(metrics.map(|address| address.port()), Some(4001));
        let (_, metrics) = parse_ready_line("coachflow ready grpc=127.0.0.1:4000 metrics=off\n");
        assert_eq!(metrics, None);
    }

    #[test]
    fn the_clock_file_holds_the_time() {
        let clock = TestClock::new(start_time());
        clock.advance(chrono::Duration::hours(1));
        let text = std::fs::read_to_string(clock.path()).unwrap();
        assert_eq!(text, "2026-03-02T09:00:00.000Z");
    }
}
