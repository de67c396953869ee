//! Miners' own upstream API keys ("linked keys"), one per (miner hotkey,
//! service), kept in the gateway's database.
//!
//! When a miner has a key on file for a service, the gateway sends that
//! miner's calls to the service with the miner's key instead of the
//! operator's, and applies the service's linked (higher) daily cap: the key
//! on file, not the run token's `linked_key` flag, decides both, so that the
//! higher cap only ever applies to calls the miner's own key pays for.
//!
//! Lookups are on every forwarded call, so they read an in-memory map,
//! loaded when the store opens and updated by [`LinkedKeys::link`] and
//! [`LinkedKeys::unlink`]. Another process (the `sooth proxy link-key`
//! command, a validator handing over a miner's key, another gateway) may
//! change the table while a gateway runs: the gateway reloads the map every
//! [`DEFAULT_RELOAD_INTERVAL`], so such a change takes effect within that
//! time. The table is in the gateway's database file, or, for gateways
//! sharing one ledger on PostgreSQL, in that database
//! ([`LinkedKeys::open_shared`]), so that a key linked through any of them
//! serves the miner's calls on all of them.
//!
//! Keys never reach a log, an error or a `Debug` output: [`ApiKey`] prints
//! as `ApiKey(<redacted>)`, and errors about a key or a name describe the
//! rule broken, not the text given. The key must be presented upstream, so
//! it is stored as given (schema: `migrations/sqlite/0004_gateway_linked_keys.sql`);
//! the database file is made readable by its owner only when the store opens it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sqlx::{AnyPool, Row};

use sooth_migrations::{
    DatabaseError, OpenError, open_postgres, open_sqlite_file, open_sqlite_in_memory, redacted_url,
};

use crate::background::{BackgroundTask, FirstRun, spawn_periodic};

/// How often a gateway re-reads the keys on file, to see links and unlinks
/// made by other processes.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// The longest API key accepted, in bytes (the protocol's rule, which a
/// validator taking a miner's key holds it to as well).
pub const MAX_KEY_LEN: usize = sooth_protocol::MAX_API_KEY_LEN;

/// The longest miner hotkey or service name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Connections to a shared database: a reload and a link at once.
const SHARED_CONNECTIONS: u32 = 2;

/// How long a call waits for a shared database that is out of reach.
const SHARED_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// An upstream API key. Its `Debug` output is redacted, and it has no
/// `Display`: the text is only reachable through [`ApiKey::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// A key from text as typed or piped: surrounding whitespace (a trailing
    /// newline, say) is dropped.
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::InvalidKey`] when what remains is empty, longer
    /// than [`MAX_KEY_LEN`], or has a character that is not visible ASCII
    /// (such a key could not be sent in an HTTP header):
    /// `sooth_protocol::check_api_key`'s rule.
    pub fn parse(text: &str) -> Result<Self, LinkedKeyError> {
        let key = sooth_protocol::check_api_key(text).map_err(|_| LinkedKeyError::InvalidKey)?;
        Ok(Self(key.into()))
    }

    /// The key's text, to present upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why a key could not be linked, unlinked or loaded. No variant carries a
/// key's text.
#[derive(Debug, thiserror::Error)]
pub enum LinkedKeyError {
    /// The database could not be opened or its schema brought up to date.
    #[error("cannot open the database of the linked keys")]
    Open(#[from] OpenError),
    /// The key text is unusable (see [`ApiKey::parse`]).
    #[error("an API key must be 1 to {MAX_KEY_LEN} visible ASCII characters (no spaces inside)")]
    InvalidKey,
    /// A miner hotkey or service name is unusable.
    #[error("the {0} must be 1 to {MAX_NAME_LEN} ASCII letters, digits, '-', '_' or '.'")]
    InvalidName(&'static str),
    /// The database failed. sqlx reports statements and database messages,
    /// never bound values, so no key appears here.
    #[error("the linked keys' database failed")]
    Database(#[source] DatabaseError),
}

impl From<sqlx::Error> for LinkedKeyError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error.into())
    }
}

/// Service name, then miner hotkey, to key: a lookup borrows both names and
/// allocates nothing.
type KeyMap = HashMap<String, HashMap<String, ApiKey>>;

/// The store of linked keys. Cheap to clone; clones share the map, and the
/// background reload stops when the last clone goes.
#[derive(Clone)]
pub struct LinkedKeys {
    pool: AnyPool,
    keys: Arc<RwLock<KeyMap>>,
    /// Serialises writes with reloads, so that a reload that read the table
    /// before a link cannot overwrite the map after it.
    writes: Arc<tokio::sync::Mutex<()>>,
    reloader: Option<Arc<BackgroundTask>>,
}

impl fmt::Debug for LinkedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkedKeys")
            .field("keys_on_file", &self.len())
            .finish_non_exhaustive()
    }
}

const LOAD_SQL: &str = "SELECT miner, service, api_key FROM gateway_linked_keys";

// Upsert (`ON CONFLICT ... DO UPDATE`, with `excluded`): SQLite >= 3.24 and
// PostgreSQL alike.
const LINK_SQL: &str = "\
INSERT INTO gateway_linked_keys (miner, service, api_key, linked_at_ms)
VALUES ($1, $2, $3, $4)
ON CONFLICT (miner, service) DO UPDATE
   SET api_key = excluded.api_key, linked_at_ms = excluded.linked_at_ms";

const UNLINK_SQL: &str = "DELETE FROM gateway_linked_keys WHERE miner = $1 AND service = $2";

impl LinkedKeys {
    /// Opens (creating if needed) the database file at `path`, brings its
    /// schema up to date, restricts the file to its owner, loads the keys,
    /// and re-reads them every `reload_every` (never when `None`).
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::Open`] when the file cannot be opened or migrated,
    /// [`LinkedKeyError::Database`] when the keys cannot be read.
    pub async fn open(path: &Path, reload_every: Option<Duration>) -> Result<Self, LinkedKeyError> {
        let (writer, _readers) = open_sqlite_file(path, Duration::from_secs(5), false, 1).await?;
        restrict_to_owner(path);
        Self::start(writer, reload_every).await
    }

    /// Opens the keys of the gateways sharing the PostgreSQL database at
    /// `url` (bringing its schema up to date), loads them, and re-reads them
    /// every `reload_every` (never when `None`).
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::Open`] when the server cannot be reached or the
    /// schema migrated (the URL in the log without its password),
    /// [`LinkedKeyError::Database`] when the keys cannot be read.
    pub async fn open_shared(
        url: &str,
        reload_every: Option<Duration>,
    ) -> Result<Self, LinkedKeyError> {
        let pool = open_postgres(url, SHARED_CONNECTIONS, SHARED_ACQUIRE_TIMEOUT)
            .await
            .inspect_err(|_| {
                tracing::warn!(url = %redacted_url(url), "cannot open the shared linked keys");
            })?;
        Self::start(pool, reload_every).await
    }

    async fn start(pool: AnyPool, reload_every: Option<Duration>) -> Result<Self, LinkedKeyError> {
        let mut store = Self::from_pool(pool).await?;
        store.reloader = reload_every.map(|every| Arc::new(spawn_reloader(store.clone(), every)));
        Ok(store)
    }

    /// An empty store in memory, gone with its last clone: for tests, and
    /// for a miner's own gateway that must not write keys to disk.
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::Open`] when the in-memory database cannot be set
    /// up.
    pub async fn in_memory() -> Result<Self, LinkedKeyError> {
        Self::from_pool(open_sqlite_in_memory().await?).await
    }

    async fn from_pool(pool: AnyPool) -> Result<Self, LinkedKeyError> {
        let keys = load(&pool).await?;
        Ok(Self {
            pool,
            keys: Arc::new(RwLock::new(keys)),
            writes: Arc::default(),
            reloader: None,
        })
    }

    /// Links `key` for `miner`'s calls to `service`, replacing any key
    /// already on file. Whether `service` exists is the caller's to check
    /// (the store does not know the configuration).
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::InvalidName`] for an unusable hotkey or service
    /// name; [`LinkedKeyError::Database`] when the row cannot be written
    /// (then nothing changed).
    pub async fn link(
        &self,
        miner: &str,
        service: &str,
        key: ApiKey,
    ) -> Result<(), LinkedKeyError> {
        check_name(miner, "miner hotkey")?;
        check_name(service, "service name")?;
        let _writing = self.writes.lock().await;
        sqlx::query(LINK_SQL)
            .bind(miner)
            .bind(service)
            .bind(key.expose())
            .bind(crate::cache::unix_now_ms())
            .execute(&self.pool)
            .await?;
        self.write_map()
            .entry(service.to_owned())
            .or_default()
            .insert(miner.to_owned(), key);
        Ok(())
    }

    /// Removes `miner`'s key for `service`; its calls go back to the
    /// operator's key and cap. Returns whether a key was on file.
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::InvalidName`] for an unusable hotkey or service
    /// name; [`LinkedKeyError::Database`] when the row cannot be deleted.
    pub async fn unlink(&self, miner: &str, service: &str) -> Result<bool, LinkedKeyError> {
        check_name(miner, "miner hotkey")?;
        check_name(service, "service name")?;
        let _writing = self.writes.lock().await;
        let deleted = sqlx::query(UNLINK_SQL)
            .bind(miner)
            .bind(service)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if let Some(miners) = self.write_map().get_mut(service) {
            miners.remove(miner);
        }
        Ok(deleted > 0)
    }

    /// The key `miner` linked for `service`, if any (from memory).
    pub fn lookup(&self, service: &str, miner: &str) -> Option<ApiKey> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(service)?
            .get(miner)
            .cloned()
    }

    /// How many keys are on file (as last loaded).
    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(HashMap::len)
            .sum()
    }

    /// Whether no key is on file (as last loaded).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the keys on file, to see changes made by other processes.
    ///
    /// # Errors
    ///
    /// [`LinkedKeyError::Database`] when the table cannot be read; the keys
    /// in memory are kept then.
    pub async fn reload(&self) -> Result<(), LinkedKeyError> {
        let _writing = self.writes.lock().await;
        let keys = load(&self.pool).await?;
        *self.write_map() = keys;
        Ok(())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, KeyMap> {
        self.keys.write().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn load(pool: &AnyPool) -> Result<KeyMap, LinkedKeyError> {
    let mut keys = KeyMap::new();
    for row in sqlx::query(LOAD_SQL).fetch_all(pool).await? {
        let miner: String = row.try_get("miner")?;
        let service: String = row.try_get("service")?;
        let text: String = row.try_get("api_key")?;
        // Rows are written through `link`; one written by other means and
        // unusable is skipped (naming the row, not the key) rather than
        // failing every miner's calls.
        match ApiKey::parse(&text) {
            Ok(key) => {
                keys.entry(service).or_default().insert(miner, key);
            }
            Err(_) => tracing::warn!(%miner, %service, "linked keys: skipping an unusable key"),
        }
    }
    Ok(keys)
}

fn check_name(name: &str, what: &'static str) -> Result<(), LinkedKeyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(LinkedKeyError::InvalidName(what))
    }
}

/// Makes the database and its WAL files readable by their owner only: they
/// now hold miners' keys. Best effort (a file SQLite has not created yet
/// takes the database file's mode when it is created).
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
        for file in files.iter().filter(|f| f.exists()) {
            if let Err(error) =
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
            {
                tracing::warn!(file = %file.display(), %error, "cannot restrict the gateway database to its owner");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Re-reads the keys every `every` (the first time after one interval: the
/// store was just loaded); on a failure the keys in memory stay.
fn spawn_reloader(store: LinkedKeys, every: Duration) -> BackgroundTask {
    spawn_periodic(
        store.pool.clone(),
        every,
        FirstRun::AfterOnePeriod,
        "linked keys: reload failed; keeping the keys in memory",
        move || {
            let store = store.clone();
            async move { store.reload().await }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> ApiKey {
        ApiKey::parse(text).expect("a valid key")
    }

    #[test]
    fn keys_are_trimmed_checked_and_never_printed() {
        assert_eq!(key("  sk-abc123\n").expose(), "sk-abc123");
        // The error is a bare variant: it cannot carry the text it refused.
        for bad in ["", " \n", "has space", "tab\there", "é-accent"] {
            assert!(
                matches!(ApiKey::parse(bad), Err(LinkedKeyError::InvalidKey)),
                "{bad:?}"
            );
        }
        assert!(ApiKey::parse(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
        let secret = key("sk-very-secret");
        assert_eq!(format!("{secret:?}"), "ApiKey(<redacted>)");
        assert!(!format!("{:?}", Some(secret)).contains("very-secret"));
    }

    #[tokio::test]
    async fn link_lookup_unlink_and_names_are_checked() {
        let store = LinkedKeys::in_memory().await.expect("store");
        assert!(store.lookup("chutes", "5Miner").is_none());
        store
            .link("5Miner", "chutes", key("k1"))
            .await
            .expect("link");
        store
            .link("5Miner", "chutes", key("k2"))
            .await
            .expect("relink");
        assert_eq!(store.lookup("chutes", "5Miner"), Some(key("k2")));
        assert!(store.lookup("desearch", "5Miner").is_none());
        assert!(store.lookup("chutes", "5Other").is_none());
        assert_eq!(store.len(), 1);
        assert!(!format!("{store:?}").contains("k2"));
        assert!(store.unlink("5Miner", "chutes").await.expect("unlink"));
        assert!(
            !store
                .unlink("5Miner", "chutes")
                .await
                .expect("unlink again")
        );
        assert!(store.lookup("chutes", "5Miner").is_none());
        for (miner, service) in [("", "chutes"), ("5 Miner", "chutes"), ("5Miner", "a/b")] {
            assert!(matches!(
                store.link(miner, service, key("k")).await,
                Err(LinkedKeyError::InvalidName(_))
            ));
        }
    }

    #[tokio::test]
    async fn keys_survive_a_restart_and_other_processes_links_are_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.sqlite");
        let gateway = LinkedKeys::open(&path, None).await.expect("open");
        // Another process (the CLI) on the same file.
        let cli = LinkedKeys::open(&path, None).await.expect("open again");
        cli.link("5Miner", "chutes", key("from-cli"))
            .await
            .expect("link");
        assert!(
            gateway.lookup("chutes", "5Miner").is_none(),
            "not reloaded yet"
        );
        gateway.reload().await.expect("reload");
        assert_eq!(gateway.lookup("chutes", "5Miner"), Some(key("from-cli")));
        drop((gateway, cli));
        let reopened = LinkedKeys::open(&path, None).await.expect("reopen");
        assert_eq!(reopened.lookup("chutes", "5Miner"), Some(key("from-cli")));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "the file holding keys is the owner's alone"
            );
        }
    }

    #[tokio::test]
    async fn a_running_store_sees_other_processes_changes_by_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.sqlite");
        let gateway = LinkedKeys::open(&path, Some(Duration::from_millis(20)))
            .await
            .expect("open");
        let cli = LinkedKeys::open(&path, None).await.expect("open again");
        let seen = |want: Option<ApiKey>| {
            let gateway = gateway.clone();
            async move {
                for _ in 0..200 {
                    if gateway.lookup("chutes", "5Miner") == want {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                false
            }
        };
        cli.link("5Miner", "chutes", key("k")).await.expect("link");
        assert!(seen(Some(key("k"))).await, "the link is picked up");
        cli.unlink("5Miner", "chutes").await.expect("unlink");
        assert!(seen(None).await, "the unlink is picked up");
    }
}
