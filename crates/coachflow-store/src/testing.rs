//! Test support (feature `testing`): a fresh, migrated database per test, on SQLite or
//! PostgreSQL, removed when its guard drops.
//!
//! PostgreSQL databases are created through the admin URL in
//! `COACHFLOW_TEST_POSTGRES_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};

use crate::{Store, StoreOptions};

/// Environment variable with the URL of a PostgreSQL database tests may create databases
/// from.
pub const POSTGRES_URL_VAR: &str = "COACHFLOW_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/postgres";

/// A name no other test of any process uses.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory holding one SQLite database, removed on drop.
#[derive(Debug)]
pub struct TempDirGuard {
    dir: PathBuf,
    url: String,
}

impl TempDirGuard {
    /// A new empty directory under the system's temporary directory.
    pub fn new() -> TempDirGuard {
        let dir = std::env::temp_dir().join(unique_name("coachflow-test"));
        std::fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
        let url = format!("sqlite://{}", dir.join("coachflow.db").display());
        TempDirGuard { dir, url }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `sqlite://<dir>/coachflow.db`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Default for TempDirGuard {
    fn default() -> Self {
        TempDirGuard::new()
    }
}

impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The URL of a new SQLite file (not created or migrated yet), e.g. for black-box tests
/// that start the real binary.
pub fn fresh_sqlite_url() -> (String, TempDirGuard) {
    let guard = TempDirGuard::new();
    (guard.url().to_owned(), guard)
}

/// A migrated store on a new SQLite file.
pub async fn fresh_sqlite() -> (Store, TempDirGuard) {
    fresh_sqlite_with(StoreOptions::default()).await
}

pub async fn fresh_sqlite_with(options: StoreOptions) -> (Store, TempDirGuard) {
    let guard = TempDirGuard::new();
    let store = connect_and_migrate(guard.url(), options).await;
    (store, guard)
}

/// A PostgreSQL database created for one test, dropped (best effort, with `FORCE`) when
/// the guard drops or by [`PgDatabaseGuard::cleanup`].
#[derive(Debug)]
pub struct PgDatabaseGuard {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl PgDatabaseGuard {
    /// The URL of the test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database now, waiting for it.
    pub async fn cleanup(mut self) {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl Drop for PgDatabaseGuard {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop cannot await: a thread with its own runtime does, so this works inside and
        // outside a tokio runtime alike.
        let dropper = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                runtime.block_on(drop_database(&admin_url, &name));
            }
        });
        let _ = dropper.join();
    }
}

/// The admin URL tests create their databases through.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned())
}

/// A migrated store on a new PostgreSQL database.
pub async fn fresh_postgres() -> (Store, PgDatabaseGuard) {
    fresh_postgres_with(StoreOptions::default()).await
}

pub async fn fresh_postgres_with(options: StoreOptions) -> (Store, PgDatabaseGuard) {
    let (url, guard) = fresh_postgres_url().await;
    let store = connect_and_migrate(&url, options).await;
    (store, guard)
}

/// The URL of a new, empty (not migrated) PostgreSQL database, e.g. for black-box tests
/// that start the real binary.
pub async fn fresh_postgres_url() -> (String, PgDatabaseGuard) {
    let admin_url = postgres_admin_url();
    let admin = connect_admin(&admin_url).await;
    let name = unique_name("cf_test");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    let guard = PgDatabaseGuard {
        admin_url,
        name,
        url: url.clone(),
        dropped: false,
    };
    (url, guard)
}

async fn connect_admin(admin_url: &str) -> DatabaseConnection {
    let mut options = ConnectOptions::new(admin_url);
    options
        .max_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(options).await.unwrap_or_else(|error| {
        panic!(
            "PostgreSQL is unreachable at {} ({error}): start it with scripts/test, or point {POSTGRES_URL_VAR} at a server",
            crate::connect::redact_url(admin_url)
        )
    })
}

async fn drop_database(admin_url: &str, name: &str) {
    let mut options = ConnectOptions::new(admin_url);
    options.max_connections(1).sqlx_logging(false);
    if let Ok(admin) = Database::connect(options).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await;
        let _ = admin.close().await;
    }
}

async fn connect_and_migrate(url: &str, options: StoreOptions) -> Store {
    let store = Store::connect(url, options)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", crate::connect::redact_url(url)));
    store
        .migrate()
        .await
        .unwrap_or_else(|error| panic!("cannot migrate {}: {error}", crate::connect::redact_url(url)));
    store
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (location, query) = match rest.split_once('?') {
        Some((location, query)) => (location, Some(query)),
        None => (rest, None),
    };
    let authority = location.split_once('/').map_or(location, |(authority, _)| authority);
    match query {
        Some(query) => format!("{scheme}://{authority}/{database}?{query}"),
        None => format!("{scheme}://{authority}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/postgres", "cf_test_1"),
            "postgres://u:p@h:5432/cf_test_1"
        );
        assert_eq!(
            with_database("postgres://h/postgres?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }

    #[test]
    fn temp_dirs_are_removed_on_drop() {
        let guard = TempDirGuard::new();
        let path = guard.path().to_owned();
        assert!(path.is_dir());
        drop(guard);
        assert!(!path.exists());
    }
}

/// Holds a store's batch commits (PostgreSQL) while it lives: the commits made meanwhile
/// wait in one open batch, and go together once it drops.
#[derive(Debug)]
pub struct BatchHold {
    _slots: tokio::sync::OwnedSemaphorePermit,
}

impl Store {
    /// Holds the batch commits until the returned guard drops (PostgreSQL; commits on
    /// SQLite are not held).
    pub async fn hold_batch_commits(&self) -> BatchHold {
        BatchHold {
            _slots: self.batch.hold().await,
        }
    }

    /// The commits waiting in the open batch (PostgreSQL).
    pub fn queued_batch_commits(&self) -> usize {
        self.batch.queued()
    }
}
