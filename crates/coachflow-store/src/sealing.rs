//! Content at rest: sealed (AES-256-GCM) under a data key per engagement, the data keys
//! wrapped by a key-encryption key (KEK).
//!
//! An event's content fields ([`EventKind::content_fields`]) leave its payload for one
//! sealed string (`"sealed": "<generation>.<base64>"`); a snapshot is sealed whole. Erasing
//! an engagement's content destroys its data keys, so every copy sealed under them (events,
//! snapshots, backups, the WAL) is unreadable at once while the append-only log keeps its
//! skeleton; the engagement's later content is sealed under a new generation of key.
//!
//! Every ciphertext is bound (as associated data) to where it belongs, so a sealed value
//! moved to another engagement, event or snapshot does not open.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, Utc};
use coachflow_engine::{Event, EventKind};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sea_orm::sea_query::{Expr, Func, OnConflict};
use sea_orm::{ActiveValue, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use crate::entity::{content_kek, content_key};
use crate::{Store, StoreError};

/// Bytes of a key (AES-256).
const KEY_LEN: usize = 32;
/// The id of the key-encryption key a database keeps for itself (see [`KekSource::Auto`]).
const DATABASE_KEK_ID: &str = "database";
/// Data keys kept unwrapped in memory; the cache starts over when full.
const CACHED_KEYS: usize = 16_384;
/// Where a sealed snapshot's text starts.
const SEALED_SNAPSHOT: &str = "sealed:";
/// The payload field that holds an event's sealed content.
const SEALED_FIELD: &str = "sealed";
/// That field as a key in a payload's text. A quote inside a JSON string is escaped, so
/// this text appears only where some object has the key: a payload without it holds
/// nothing sealed.
const SEALED_KEY: &str = "\"sealed\":";

/// What a load reads of a stored event: its sequence and its payload (the rest of its row
/// is in the payload too).
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub(crate) struct StoredEvent {
    pub sequence: i64,
    pub payload: String,
}

/// Whether a stored event's payload holds sealed content.
pub(crate) fn is_sealed(row: &StoredEvent) -> bool {
    row.payload.contains(SEALED_KEY)
}

/// A stored event that cannot be read as written.
fn corrupt_event(tenant: &str, engagement: &str, sequence: i64, problem: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "event {sequence} of engagement {tenant}/{engagement}: {problem}"
    ))
}

/// Where the key-encryption keys come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum KekSource {
    /// Keys given (base64 of 32 bytes), the first the current one; the others only unwrap
    /// data keys until they are rewrapped ([`Store::rewrap_content_keys`]).
    Keys(Vec<String>),
    /// None configured: beside a SQLite file (`<file>.kek`, made on first use, mode 0600);
    /// a fresh one for an in-memory database; on PostgreSQL a key the database keeps
    /// itself, which then does not protect its backups (a warning says so).
    #[default]
    Auto,
}

/// A fresh random key-encryption key, base64 (for `coachflow keys generate`).
pub fn generate_kek() -> Result<String, StoreError> {
    Ok(STANDARD.encode(random_key()?))
}

/// One key-encryption key, named by a digest of itself.
struct Kek {
    id: String,
    key: LessSafeKey,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    fn from_base64(text: &str) -> Result<Kek, StoreError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|error| StoreError::Invalid(format!("a key-encryption key is not base64: {error}")))?;
        Kek::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<Kek, StoreError> {
        if bytes.len() != KEY_LEN {
            return Err(StoreError::Invalid(format!(
                "a key-encryption key must be {KEY_LEN} bytes, not {}",
                bytes.len()
            )));
        }
        let digest = Sha256::digest(bytes);
        Ok(Kek {
            id: crate::hex(&digest[..8]),
            key: aead_key(bytes)?,
        })
    }
}

/// The key-encryption keys, the current one first.
#[derive(Debug)]
struct Keyring {
    keks: Vec<Kek>,
}

impl Keyring {
    fn current(&self) -> &Kek {
        &self.keks[0]
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        self.keks.iter().find(|kek| kek.id == id)
    }
}

/// The store's keys: the keyring (read on first use, after migrations) and the data keys
/// it has unwrapped.
pub(crate) struct Vault {
    source: KekSource,
    sqlite_file: Option<PathBuf>,
    keyring: tokio::sync::OnceCell<Keyring>,
    /// (tenant, engagement, generation) → the data key, or `None` once destroyed.
    keys: Mutex<HashMap<KeyId, Option<Arc<LessSafeKey>>>>,
}

/// A data key's (tenant, engagement, generation).
type KeyId = (String, String, u32);

impl std::fmt::Debug for Vault {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Vault")
            .field("sqlite_file", &self.sqlite_file)
            .finish_non_exhaustive()
    }
}

impl Vault {
    pub(crate) fn new(source: KekSource, sqlite_file: Option<PathBuf>) -> Vault {
        Vault {
            source,
            sqlite_file,
            keyring: tokio::sync::OnceCell::new(),
            keys: Mutex::new(HashMap::new()),
        }
    }

    async fn keyring(&self, db: &DatabaseConnection) -> Result<&Keyring, StoreError> {
        self.keyring
            .get_or_try_init(|| async {
                let mut keks = match &self.source {
                    KekSource::Keys(keys) if !keys.is_empty() => keys
                        .iter()
                        .map(|key| Kek::from_base64(key))
                        .collect::<Result<Vec<_>, _>>()?,
                    KekSource::Keys(_) | KekSource::Auto => match &self.sqlite_file {
                        Some(file) => vec![Kek::from_base64(&kek_beside(file)?)?],
                        None if db.get_database_backend() == sea_orm::DbBackend::Sqlite => {
                            vec![Kek::from_bytes(&random_key()?)?]
                        }
                        None => {
                            tracing::warn!(
                                "content.kek is not set: the database keeps its own key-encryption key, so an \
                                 erasure does not reach backups of the database; set content.kek (or \
                                 content.kek_file) in production"
                            );
                            vec![database_kek(db).await?]
                        }
                    },
                };
                // A key the database kept before keys were configured still unwraps what it
                // wrapped, until the rewrap moves those to the current key.
                if matches!(&self.source, KekSource::Keys(keys) if !keys.is_empty())
                    && let Some(row) = content_kek::Entity::find_by_id(DATABASE_KEK_ID.to_owned())
                        .one(db)
                        .await?
                {
                    keks.push(Kek::from_base64(&row.key)?);
                }
                Ok(Keyring { keks })
            })
            .await
    }

    fn cached(&self, key: &KeyId) -> Option<Option<Arc<LessSafeKey>>> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    pub(crate) fn remember(&self, key: KeyId, value: Option<Arc<LessSafeKey>>) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= CACHED_KEYS {
            keys.clear();
        }
        keys.insert(key, value);
    }

    /// Forgets an engagement's keys (they were destroyed).
    pub(crate) fn forget(&self, tenant: &str, engagement: &str) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, e, _), _| !(t == tenant && e == engagement));
    }
}

/// The data key a commit seals under, and the row to insert when it is new.
#[derive(Debug)]
pub(crate) struct SealingKey {
    pub(crate) generation: u32,
    pub(crate) key: Arc<LessSafeKey>,
    pub(crate) new_row: Option<content_key::Model>,
}

impl Store {
    /// The data key of `generation`: `None` once destroyed or when it never existed.
    pub(crate) async fn data_key(
        &self,
        tenant: &str,
        engagement: &str,
        generation: u32,
    ) -> Result<Option<Arc<LessSafeKey>>, StoreError> {
        let cache_key = (tenant.to_owned(), engagement.to_owned(), generation);
        if let Some(cached) = self.vault.cached(&cache_key) {
            return Ok(cached);
        }
        let row = content_key::Entity::find_by_id((tenant.to_owned(), engagement.to_owned(), to_i32(generation)))
            .one(&self.db)
            .await?;
        let key = match row {
            Some(content_key::Model {
                kek: Some(kek),
                wrapped: Some(wrapped),
                ..
            }) => Some(Arc::new(
                self.unwrap_key(tenant, engagement, generation, &kek, &wrapped).await?,
            )),
            // Destroyed; a key that never existed is not remembered (it may be made yet).
            Some(_) => None,
            None => return Ok(None),
        };
        self.vault.remember(cache_key, key.clone());
        Ok(key)
    }

    /// The key a commit to an engagement seals its content under: a new one when the commit
    /// creates the engagement, erases its content, or the engagement predates sealing.
    pub(crate) async fn sealing_key(
        &self,
        tenant: &str,
        engagement: &str,
        generation: u32,
        fresh: bool,
        now: DateTime<Utc>,
    ) -> Result<SealingKey, StoreError> {
        if !fresh && let Some(key) = self.data_key(tenant, engagement, generation).await? {
            return Ok(SealingKey {
                generation,
                key,
                new_row: None,
            });
        }
        let bytes = random_key()?;
        let keyring = self.vault.keyring(&self.db).await?;
        let kek = keyring.current();
        let wrapped = seal(&kek.key, &wrap_aad(tenant, engagement, generation), &bytes)?;
        Ok(SealingKey {
            generation,
            key: Arc::new(aead_key(&bytes)?),
            new_row: Some(content_key::Model {
                tenant: tenant.to_owned(),
                engagement: engagement.to_owned(),
                generation: to_i32(generation),
                kek: Some(kek.id.clone()),
                wrapped: Some(wrapped),
                created_at: now,
                destroyed_at: None,
            }),
        })
    }

    async fn unwrap_key(
        &self,
        tenant: &str,
        engagement: &str,
        generation: u32,
        kek: &str,
        wrapped: &str,
    ) -> Result<LessSafeKey, StoreError> {
        let keyring = self.vault.keyring(&self.db).await?;
        let Some(kek) = keyring.find(kek) else {
            return Err(StoreError::Invalid(format!(
                "the data key of engagement {tenant}/{engagement} is wrapped by key-encryption key {kek}, which is \
                 not configured (content.kek)"
            )));
        };
        let bytes = open(&kek.key, &wrap_aad(tenant, engagement, generation), wrapped).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "the data key of engagement {tenant}/{engagement} does not unwrap"
            ))
        })?;
        aead_key(&bytes)
    }

    /// Rewraps up to `limit` data keys not wrapped by the current key-encryption key;
    /// returns how many. Idempotent and safe with several replicas (a key is rewrapped only
    /// while still under the key it was read under). Once none is left under the
    /// database's own key, that key is deleted.
    pub async fn rewrap_content_keys(&self, limit: u64) -> Result<u64, StoreError> {
        let keyring = self.vault.keyring(&self.db).await?;
        let current = keyring.current();
        let rows = content_key::Entity::find()
            .filter(content_key::Column::Kek.is_not_null())
            .filter(content_key::Column::Kek.ne(current.id.clone()))
            .limit(limit)
            .all(&self.db)
            .await?;
        let mut rewrapped = 0;
        for row in &rows {
            let (Some(kek), Some(wrapped)) = (&row.kek, &row.wrapped) else {
                continue;
            };
            let generation = u32::try_from(row.generation).unwrap_or_default();
            let key = {
                let Some(old) = keyring.find(kek) else {
                    return Err(StoreError::Invalid(format!(
                        "data keys are wrapped by key-encryption key {kek}, which is not configured (content.kek)"
                    )));
                };
                let aad = wrap_aad(&row.tenant, &row.engagement, generation);
                let bytes = open(&old.key, &aad, wrapped).ok_or_else(|| {
                    StoreError::Corrupt(format!(
                        "the data key of engagement {}/{} does not unwrap",
                        row.tenant, row.engagement
                    ))
                })?;
                seal(&current.key, &aad, &bytes)?
            };
            let updated = content_key::Entity::update_many()
                .col_expr(content_key::Column::Kek, Expr::value(current.id.clone()))
                .col_expr(content_key::Column::Wrapped, Expr::value(key))
                .filter(content_key::Column::Tenant.eq(&row.tenant))
                .filter(content_key::Column::Engagement.eq(&row.engagement))
                .filter(content_key::Column::Generation.eq(row.generation))
                .filter(content_key::Column::Kek.eq(kek))
                .exec(&self.db)
                .await?;
            rewrapped += updated.rows_affected;
        }
        if rows.is_empty() && current.id != DATABASE_KEK_ID && keyring.find(DATABASE_KEK_ID).is_none() {
            // Nothing left under an older key: the database's own key, if any, can go.
            let left_under_database = content_key::Entity::find()
                .filter(content_key::Column::Kek.eq(DATABASE_KEK_ID))
                .one(&self.db)
                .await?;
            if left_under_database.is_none() {
                content_kek::Entity::delete_by_id(DATABASE_KEK_ID.to_owned())
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(rewrapped)
    }

    /// How many data keys are wrapped by a key-encryption key other than the current one.
    pub async fn content_keys_to_rewrap(&self) -> Result<u64, StoreError> {
        use sea_orm::PaginatorTrait as _;
        let keyring = self.vault.keyring(&self.db).await?;
        Ok(content_key::Entity::find()
            .filter(content_key::Column::Kek.is_not_null())
            .filter(content_key::Column::Kek.ne(keyring.current().id.clone()))
            .count(&self.db)
            .await?)
    }

    /// The live generation ([`Store::live_generation`]) of each of `engagements`, read with
    /// their data keys in one query per [`ROWS_PER_INSERT`] engagements; the keys are kept,
    /// so opening the engagements' content reads nothing more. An engagement without keys
    /// maps to `None`.
    pub(crate) async fn prefetch_keys(
        &self,
        engagements: &[(String, String)],
    ) -> Result<HashMap<(String, String), Option<u32>>, StoreError> {
        let mut live: HashMap<(String, String), Option<u32>> = engagements
            .iter()
            .map(|engagement| (engagement.clone(), None))
            .collect();
        for chunk in engagements.chunks(crate::commit::ROWS_PER_INSERT) {
            let rows = content_key::Entity::find()
                .filter(crate::keys::in_values(
                    self.db_backend(),
                    "tenant, engagement",
                    chunk
                        .iter()
                        .map(|(tenant, engagement)| [tenant.clone().into(), engagement.clone().into()]),
                ))
                .all(&self.db)
                .await?;
            for row in rows {
                let generation = u32::try_from(row.generation)
                    .map_err(|_| StoreError::Corrupt(format!("data key generation {}", row.generation)))?;
                let id = (row.tenant.clone(), row.engagement.clone(), generation);
                if self.vault.cached(&id).is_none() {
                    let key = match (&row.kek, &row.wrapped) {
                        (Some(kek), Some(wrapped)) => Some(Arc::new(
                            self.unwrap_key(&row.tenant, &row.engagement, generation, kek, wrapped)
                                .await?,
                        )),
                        _ => None,
                    };
                    self.vault.remember(id, key);
                }
                if row.destroyed_at.is_none() {
                    let oldest = live.entry((row.tenant, row.engagement)).or_default();
                    *oldest = Some(oldest.map_or(generation, |oldest: u32| Ord::min(oldest, generation)));
                }
            }
        }
        Ok(live)
    }

    /// The oldest generation of the engagement's data keys not destroyed: what was sealed
    /// under an older one is erased, whatever keys this replica still keeps in memory (an
    /// erasure on another replica does not reach them). `None`: no key is live.
    pub(crate) async fn live_generation(&self, tenant: &str, engagement: &str) -> Result<Option<u32>, StoreError> {
        let generation: Option<Option<i32>> = content_key::Entity::find()
            .select_only()
            .expr(Func::min(Expr::col(content_key::Column::Generation)))
            .filter(content_key::Column::Tenant.eq(tenant))
            .filter(content_key::Column::Engagement.eq(engagement))
            .filter(content_key::Column::DestroyedAt.is_null())
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(generation
            .flatten()
            .and_then(|generation| u32::try_from(generation).ok()))
    }

    /// Decodes stored events, opening their sealed content; returns each with whether its
    /// content was erased (sealed under a key destroyed since).
    pub(crate) async fn open_events(
        &self,
        tenant: &str,
        engagement: &str,
        rows: &[StoredEvent],
        live: Option<u32>,
    ) -> Result<Vec<(Event, bool)>, StoreError> {
        let mut keys: HashMap<u32, Option<Arc<LessSafeKey>>> = HashMap::new();
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let (event, erased) = if is_sealed(row) {
                self.open_sealed_event(tenant, engagement, row, live, &mut keys).await?
            } else {
                // Nothing sealed: read straight into the event, with no JSON tree between.
                let event: Event = serde_json::from_str(&row.payload)
                    .map_err(|error| corrupt_event(tenant, engagement, row.sequence, &error.to_string()))?;
                (event, false)
            };
            if i64::try_from(event.sequence).ok() != Some(row.sequence) {
                return Err(corrupt_event(
                    tenant,
                    engagement,
                    row.sequence,
                    &format!("it carries sequence {}", event.sequence),
                ));
            }
            events.push((event, erased));
        }
        Ok(events)
    }

    /// Decodes a stored event whose payload holds sealed content, opened with its data key
    /// (`keys` keeps the engagement's keys met so far); returns it with whether its content
    /// was erased.
    async fn open_sealed_event(
        &self,
        tenant: &str,
        engagement: &str,
        row: &StoredEvent,
        live: Option<u32>,
        keys: &mut HashMap<u32, Option<Arc<LessSafeKey>>>,
    ) -> Result<(Event, bool), StoreError> {
        let corrupt = |problem: &str| corrupt_event(tenant, engagement, row.sequence, problem);
        let mut payload: Value = serde_json::from_str(&row.payload).map_err(|error| corrupt(&error.to_string()))?;
        let mut erased = false;
        if let Some(sealed) = payload.as_object_mut().and_then(|object| object.remove(SEALED_FIELD)) {
            let (generation, ciphertext) = sealed
                .as_str()
                .and_then(split_sealed)
                .ok_or_else(|| corrupt("its sealed content is malformed"))?;
            let key = match keys.get(&generation) {
                _ if live.is_none_or(|live| generation < live) => None,
                Some(key) => key.clone(),
                None => {
                    let key = self.data_key(tenant, engagement, generation).await?;
                    keys.insert(generation, key.clone());
                    key
                }
            };
            match key {
                Some(key) => {
                    let aad = event_aad(tenant, engagement, row.sequence);
                    let plain =
                        open(&key, &aad, ciphertext).ok_or_else(|| corrupt("its sealed content does not open"))?;
                    let content: Map<String, Value> =
                        serde_json::from_slice(&plain).map_err(|error| corrupt(&error.to_string()))?;
                    if let Some(object) = payload.as_object_mut() {
                        object.extend(content);
                    }
                }
                None => erased = true,
            }
        }
        let event = serde_json::from_value(payload).map_err(|error| corrupt(&error.to_string()))?;
        Ok((event, erased))
    }

    /// A snapshot's state text opened; `None` when it was sealed under a destroyed key.
    pub(crate) async fn open_snapshot(
        &self,
        tenant: &str,
        engagement: &str,
        sequence: i64,
        text: String,
        live: Option<u32>,
    ) -> Result<Option<String>, StoreError> {
        let Some(sealed) = text.strip_prefix(SEALED_SNAPSHOT) else {
            return Ok(Some(text));
        };
        let corrupt = |problem: &str| {
            StoreError::Corrupt(format!(
                "snapshot {sequence} of engagement {tenant}/{engagement}: {problem}"
            ))
        };
        let (generation, ciphertext) = split_sealed(sealed).ok_or_else(|| corrupt("malformed"))?;
        if live.is_none_or(|live| generation < live) {
            return Ok(None);
        }
        let Some(key) = self.data_key(tenant, engagement, generation).await? else {
            return Ok(None);
        };
        let plain = open(&key, &snapshot_aad(tenant, engagement, sequence), ciphertext)
            .ok_or_else(|| corrupt("does not open"))?;
        String::from_utf8(plain).map(Some).map_err(|_| corrupt("not UTF-8"))
    }
}

/// Destroys every data key of an engagement older than `generation`, in `connection`'s
/// transaction; the cached ones are forgotten by the caller after the commit.
pub(crate) async fn destroy_keys_before(
    connection: &impl ConnectionTrait,
    tenant: &str,
    engagement: &str,
    generation: u32,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    content_key::Entity::update_many()
        .col_expr(content_key::Column::Kek, Expr::value(Option::<String>::None))
        .col_expr(content_key::Column::Wrapped, Expr::value(Option::<String>::None))
        .col_expr(content_key::Column::DestroyedAt, Expr::value(Some(now)))
        .filter(content_key::Column::Tenant.eq(tenant))
        .filter(content_key::Column::Engagement.eq(engagement))
        .filter(content_key::Column::Generation.lt(to_i32(generation)))
        .filter(content_key::Column::DestroyedAt.is_null())
        .exec(connection)
        .await?;
    Ok(())
}

/// The payload of `event` with its content sealed under `key`.
pub(crate) fn seal_event(
    tenant: &str,
    engagement: &str,
    event: &Event,
    key: &SealingKey,
) -> Result<String, StoreError> {
    let encode =
        |error: serde_json::Error| StoreError::Invalid(format!("cannot encode event {}: {error}", event.sequence));
    let fields = event.kind.content_fields();
    if fields.is_empty() {
        return serde_json::to_string(event).map_err(encode);
    }
    let mut payload = serde_json::to_value(event).map_err(encode)?;
    let Some(object) = payload.as_object_mut() else {
        return serde_json::to_string(event).map_err(encode);
    };
    let content: Map<String, Value> = fields
        .iter()
        .filter_map(|field| object.remove(*field).map(|value| ((*field).to_owned(), value)))
        .collect();
    if !content.is_empty() {
        let plain = serde_json::to_vec(&content).map_err(encode)?;
        let sequence = i64::try_from(event.sequence).unwrap_or(i64::MAX);
        let sealed = seal(&key.key, &event_aad(tenant, engagement, sequence), &plain)?;
        object.insert(
            SEALED_FIELD.to_owned(),
            Value::from(format!("{}.{sealed}", key.generation)),
        );
    }
    serde_json::to_string(&payload).map_err(encode)
}

/// A snapshot's state text sealed under `key`.
pub(crate) fn seal_snapshot(
    tenant: &str,
    engagement: &str,
    sequence: i64,
    state: &str,
    key: &SealingKey,
) -> Result<String, StoreError> {
    let sealed = seal(&key.key, &snapshot_aad(tenant, engagement, sequence), state.as_bytes())?;
    Ok(format!("{SEALED_SNAPSHOT}{}.{sealed}", key.generation))
}

/// Removes a completed task's outputs from a public event's data (its content was erased).
pub(crate) fn erase_outbox_outputs(data: &mut Value) -> bool {
    match data.get_mut("outputs") {
        Some(Value::Object(outputs)) if !outputs.is_empty() => {
            outputs.clear();
            true
        }
        _ => false,
    }
}

/// Names `pseudonym` wherever `value` names `person` (whole strings, and the `~person`
/// suffix of a `for_each` task's id); returns whether anything changed.
pub fn replace_person(value: &mut Value, person: &str, pseudonym: &str) -> bool {
    match value {
        Value::String(text) => {
            if text == person {
                pseudonym.clone_into(text);
                true
            } else if let Some(stem) = text.strip_suffix(person).and_then(|stem| stem.strip_suffix('~')) {
                *text = format!("{stem}~{pseudonym}");
                true
            } else {
                false
            }
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= replace_person(item, person, pseudonym);
            }
            changed
        }
        Value::Object(object) => {
            let renamed: Vec<String> = object
                .keys()
                .filter(|key| *key == person || key.strip_suffix(person).is_some_and(|stem| stem.ends_with('~')))
                .cloned()
                .collect();
            let mut changed = !renamed.is_empty();
            for key in renamed {
                if let Some(item) = object.remove(&key) {
                    let mut new_key = Value::String(key);
                    replace_person(&mut new_key, person, pseudonym);
                    if let Value::String(new_key) = new_key {
                        object.insert(new_key, item);
                    }
                }
            }
            for item in object.values_mut() {
                changed |= replace_person(item, person, pseudonym);
            }
            changed
        }
        _ => false,
    }
}

/// Hex SHA-256 of a tenant and a person id: how `erased_people` knows a person without
/// keeping their id.
pub fn person_digest(tenant: &str, person: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [tenant, person] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    crate::hex(&hasher.finalize())
}

/// Whether any event of `events` erases content (the commit then makes a new key).
pub(crate) fn erases_content(events: &[Event]) -> bool {
    events
        .iter()
        .any(|event| matches!(event.kind, EventKind::ContentErased { .. }))
}

fn event_aad(tenant: &str, engagement: &str, sequence: i64) -> Vec<u8> {
    aad(&["coachflow/event/v1", tenant, engagement, &sequence.to_string()])
}

fn snapshot_aad(tenant: &str, engagement: &str, sequence: i64) -> Vec<u8> {
    aad(&["coachflow/snapshot/v1", tenant, engagement, &sequence.to_string()])
}

fn wrap_aad(tenant: &str, engagement: &str, generation: u32) -> Vec<u8> {
    aad(&["coachflow/content-key/v1", tenant, engagement, &generation.to_string()])
}

/// Length-prefixed parts, so no two different lists give the same bytes.
fn aad(parts: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for part in parts {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    bytes
}

fn split_sealed(text: &str) -> Option<(u32, &str)> {
    let (generation, ciphertext) = text.split_once('.')?;
    Some((generation.parse().ok()?, ciphertext))
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| StoreError::Invalid("a key of the wrong length".to_owned()))
}

/// `N` bytes from the system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| StoreError::Invalid("the system's random source failed".to_owned()))?;
    Ok(bytes)
}

fn random_key() -> Result<[u8; KEY_LEN], StoreError> {
    random_bytes()
}

/// A random nonce, then the ciphertext and its tag, base64 without padding.
fn seal(key: &LessSafeKey, aad: &[u8], plain: &[u8]) -> Result<String, StoreError> {
    let nonce: [u8; NONCE_LEN] = random_bytes()?;
    let mut buffer = plain.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buffer)
        .map_err(|_| StoreError::Invalid("sealing failed".to_owned()))?;
    let mut sealed = nonce.to_vec();
    sealed.append(&mut buffer);
    Ok(STANDARD_NO_PAD.encode(sealed))
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &str) -> Option<Vec<u8>> {
    let bytes = STANDARD_NO_PAD.decode(sealed).ok()?;
    if bytes.len() < NONCE_LEN {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plain = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    Some(plain.to_vec())
}

fn to_i32(generation: u32) -> i32 {
    i32::try_from(generation).unwrap_or(i32::MAX)
}

/// The key-encryption key beside a SQLite file, made (mode 0600) when missing.
fn kek_beside(file: &Path) -> Result<String, StoreError> {
    let mut path = file.as_os_str().to_owned();
    path.push(".kek");
    let path = PathBuf::from(path);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = generate_kek()?;
            write_private(&path, &key)?;
            // Another process may have made it first: whatever is there now is the key.
            std::fs::read_to_string(&path)
                .map(|text| text.trim().to_owned())
                .map_err(|error| StoreError::Invalid(format!("cannot read {}: {error}", path.display())))
        }
        Err(error) => Err(StoreError::Invalid(format!("cannot read {}: {error}", path.display()))),
    }
}

fn write_private(path: &Path, key: &str) -> Result<(), StoreError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => file
            .write_all(format!("{key}\n").as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| StoreError::Invalid(format!("cannot write {}: {error}", path.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Invalid(format!(
            "cannot create {}: {error}",
            path.display()
        ))),
    }
}

/// The database's own key-encryption key, made by the first replica that needs it.
async fn database_kek(db: &DatabaseConnection) -> Result<Kek, StoreError> {
    let row = content_kek::ActiveModel {
        id: ActiveValue::Set(DATABASE_KEK_ID.to_owned()),
        key: ActiveValue::Set(generate_kek()?),
        created_at: ActiveValue::Set(Utc::now()),
    };
    content_kek::Entity::insert(row)
        .on_conflict(OnConflict::column(content_kek::Column::Id).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    let row = content_kek::Entity::find_by_id(DATABASE_KEK_ID.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the database's key-encryption key is missing".to_owned()))?;
    let mut kek = Kek::from_base64(&row.key)?;
    kek.id = DATABASE_KEK_ID.to_owned();
    Ok(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_where_they_belong() {
        let key = aead_key(&random_key().unwrap()).unwrap();
        let sealed = seal(&key, &event_aad("acme", "e1", 3), b"secret").unwrap();
        assert_eq!(open(&key, &event_aad("acme", "e1", 3), &sealed).unwrap(), b"secret");
        assert!(open(&key, &event_aad("acme", "e1", 4), &sealed).is_none());
        assert!(open(&key, &event_aad("acme", "e2", 3), &sealed).is_none());
        assert!(open(&key, &snapshot_aad("acme", "e1", 3), &sealed).is_none());
        let other = aead_key(&random_key().unwrap()).unwrap();
        assert!(open(&other, &event_aad("acme", "e1", 3), &sealed).is_none());
    }

    #[test]
    fn people_are_replaced_in_values_keys_and_task_ids() {
        let mut value = serde_json::json!({
            "actor": {"kind": "person", "id": "p-42"},
            "people": {"stakeholder": ["p-42", "p-7"]},
            "id": "interview~p-42",
            "tasks": {"interview~p-42": {"subject": "p-42"}},
            "other": "xp-42",
        });
        assert!(replace_person(&mut value, "p-42", "erased-1"));
        assert_eq!(
            value,
            serde_json::json!({
                "actor": {"kind": "person", "id": "erased-1"},
                "people": {"stakeholder": ["erased-1", "p-7"]},
                "id": "interview~erased-1",
                "tasks": {"interview~erased-1": {"subject": "erased-1"}},
                "other": "xp-42",
            })
        );
        assert!(!replace_person(&mut value, "p-42", "erased-1"));
    }

    #[test]
    fn keks_are_named_by_their_digest_and_checked() {
        let key = generate_kek().unwrap();
        let kek = Kek::from_base64(&key).unwrap();
        assert_eq!(kek.id.len(), 16);
        assert_eq!(Kek::from_base64(&key).unwrap().id, kek.id);
        assert!(Kek::from_base64("c2hvcnQ=").is_err());
        assert!(Kek::from_base64("not base64!").is_err());
    }
}
