//! Connecting, migrating and closing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coachflow_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

use crate::StoreError;

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection URL names.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Invalid(format!(
                "unsupported database URL (expected sqlite://<file>, sqlite::memory: or postgres://...): {}",
                redact_url(url)
            )))
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Size of the connection pool (an in-memory SQLite database always uses one).
    pub max_connections: u32,
    /// A snapshot of the state is written once this many events have been appended since the
    /// last one, so loading replays at most this many events.
    pub snapshot_every: u64,
    /// The key-encryption keys that wrap the engagements' data keys.
    pub kek: crate::KekSource,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            snapshot_every: 100,
            kek: crate::KekSource::Auto,
        }
    }
}

/// The storage of one Coachflow deployment: a connection pool and the repositories over it.
/// Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: DatabaseConnection,
    pub(crate) backend: Backend,
    pub(crate) options: StoreOptions,
    /// SQLite: this process's writers take turns here, first come first served, before
    /// they take the database's write lock. (SQLite's own busy handler retries after
    /// growing sleeps: under many concurrent writers an unlucky one could wait past the
    /// busy timeout and fail with "database is locked".)
    writers: Arc<tokio::sync::Mutex<()>>,
    /// The commits that share the next batch transaction.
    pub(crate) batch: Arc<crate::batch::BatchCommit>,
    /// The keys content is sealed under.
    pub(crate) vault: Arc<crate::sealing::Vault>,
}

/// Held by a write transaction until it ends: the turn of SQLite writers of this process
/// (nothing on PostgreSQL).
pub(crate) type WriteTurn = Option<tokio::sync::OwnedMutexGuard<()>>;

/// How long a SQLite writer waits for another to finish before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Key of the PostgreSQL advisory lock that serializes migrations of concurrent starts
/// ("coachflo" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x636f_6163_6866_6c6f;

impl Store {
    /// Connects to `url`: `sqlite://path/to/file.db` (created if missing; WAL journal,
    /// synchronous=FULL, foreign keys on, busy timeout 5 s, temporary tables in memory),
    /// `sqlite::memory:`, or `postgres://user:password@host:port/database`. Does not
    /// migrate.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let backend = Backend::from_url(url)?;
        let vault = crate::sealing::Vault::new(options.kek.clone(), sqlite_file(url));
        let mut connect = ConnectOptions::new(url);
        connect
            .max_connections(options.max_connections.max(1))
            .sqlx_logging(false);
        if backend == Backend::Sqlite {
            if let Some(path) = sqlite_file(url) {
                create_parent_directory(&path)?;
            }
            if url.contains(":memory:") || url.contains("mode=memory") {
                // Each connection would see its own empty database: keep exactly one, forever.
                connect
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
            connect.map_sqlx_sqlite_opts(|sqlite: SqliteConnectOptions| {
                sqlite
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    // Freed pages are zeroed: nothing erased lingers in the file.
                    .pragma("secure_delete", "ON")
                    // The group commit's table of a batch's heads lives in memory.
                    .pragma("temp_store", "MEMORY")
            });
        }
        let db = Database::connect(connect).await?;
        Ok(Store {
            db,
            backend,
            options,
            writers: Arc::new(tokio::sync::Mutex::new(())),
            batch: Arc::new(crate::batch::BatchCommit::new(backend)),
            vault: Arc::new(vault),
        })
    }

    /// Applies pending migrations; idempotent. On PostgreSQL a transaction-scoped advisory
    /// lock makes replicas that start together migrate one after the other; on SQLite the
    /// write transaction does the same.
    #[tracing::instrument(level = "info", skip(self), fields(backend = self.backend.as_str()))]
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let (transaction, _turn) = self.begin_write().await?;
        let migrated = async {
            if self.backend == Backend::Postgres {
                transaction
                    .query_one_raw(Statement::from_sql_and_values(
                        DbBackend::Postgres,
                        "SELECT pg_advisory_xact_lock($1)",
                        [MIGRATION_LOCK_KEY.into()],
                    ))
                    .await?;
            }
            Migrator::up(&transaction, None).await
        }
        .await;
        finish(transaction, migrated.map_err(StoreError::from)).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// The sea-orm connection, for what the repositories do not cover (tests, tools).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// How many of this binary's migrations the database has not applied yet (0: the schema
    /// is current, or ahead of this binary).
    pub async fn pending_migrations(&self) -> Result<usize, StoreError> {
        Ok(Migrator::get_pending_migrations(&self.db).await?.len())
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.db.ping().await?)
    }

    pub async fn close(self) -> Result<(), StoreError> {
        Ok(self.db.close().await?)
    }

    /// Begins a transaction that will write; keep the turn until it ends. On SQLite the
    /// process's writers queue in order for their turn, and the transaction takes the write
    /// lock at once (`BEGIN IMMEDIATE`), so it cannot fail for a read lock that cannot be
    /// upgraded, and only other processes' writers wait on the busy timeout.
    pub(crate) async fn begin_write(&self) -> Result<(DatabaseTransaction, WriteTurn), DbErr> {
        match self.backend {
            Backend::Sqlite => {
                let turn = Arc::clone(&self.writers).lock_owned().await;
                let transaction = self
                    .db
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..TransactionOptions::default()
                    })
                    .await?;
                Ok((transaction, Some(turn)))
            }
            Backend::Postgres => Ok((self.db.begin().await?, None)),
        }
    }

    pub(crate) fn db_backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }
}

/// Commits `transaction` if `outcome` is Ok, rolls it back otherwise.
pub(crate) async fn finish<T>(
    transaction: DatabaseTransaction,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => {
            transaction.commit().await?;
            Ok(value)
        }
        Err(error) => {
            if let Err(rollback) = transaction.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(error)
        }
    }
}

/// The database file a SQLite URL names; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split_once('?').map_or(rest, |(path, _)| path);
    (!path.is_empty() && path != ":memory:" && !url.contains("mode=memory")).then(|| PathBuf::from(path))
}

/// SQLite creates a missing file but not its directory.
fn create_parent_directory(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() && !parent.exists() => std::fs::create_dir_all(parent)
            .map_err(|error| StoreError::Invalid(format!("cannot create directory {}: {error}", parent.display()))),
        _ => Ok(()),
    }
}

/// The URL without its password, for messages.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let credentials = &rest[..at];
            let user = credentials.split_once(':').map_or(credentials, |(user, _)| user);
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_url() {
        assert_eq!(Backend::from_url("sqlite::memory:").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("sqlite://data/coachflow.db").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(Backend::from_url("postgres://u:p@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::from_url("postgresql://h/db").unwrap(), Backend::Postgres);
        let error = Backend::from_url("mysql://root:secret@h/db").unwrap_err().to_string();
        assert!(error.contains("mysql://root:***@h/db"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn sqlite_files_by_url() {
        assert_eq!(
            sqlite_file("sqlite://data/coachflow.db"),
            Some(PathBuf::from("data/coachflow.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:///var/lib/cf.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/cf.db"))
        );
        assert_eq!(sqlite_file("sqlite:cf.db"), Some(PathBuf::from("cf.db")));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://shared?mode=memory"), None);
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact_url("postgres://u:p@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("sqlite::memory:"), "sqlite::memory:");
    }
}
