//! Precompiled components on disk, by content hash. Every entry carries a
//! keyed BLAKE3 tag over the engine's fingerprint, the component's hash and
//! the artifact: a corrupt entry, or one written by another engine or another
//! machine's cache, fails the check and is recompiled, never loaded. (The
//! tag does not defend against a local attacker who can write the cache
//! directory: such an attacker can read the key there too.)

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;

const MAGIC: &[u8; 8] = b"SOOTHCC1";
const TAG_LEN: usize = 32;
const KEY_FILE: &str = "cache.key";

pub(crate) struct CompileCache {
    dir: PathBuf,
    key: [u8; 32],
    fingerprint: [u8; 32],
}

/// Feeds wasmtime's compatibility hash into BLAKE3 so that the fingerprint
/// is stable across processes and Rust versions.
struct Blake3Hasher(blake3::Hasher);

impl std::hash::Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(crate) fn engine_fingerprint(engine: &Engine) -> [u8; 32] {
    use std::hash::Hash;
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
    *hasher.0.finalize().as_bytes()
}

fn load_or_create_key(dir: &Path) -> std::io::Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    if let Ok(bytes) = fs::read(&path)
        && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
    {
        return Ok(key);
    }
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|error| std::io::Error::other(error.to_string()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(&key)?;
    // Another process may have raced us; whichever key landed is the key.
    match file.persist_noclobber(&path) {
        Ok(_) => Ok(key),
        Err(_) => {
            let bytes = fs::read(&path)?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                std::io::Error::other(format!("{} is not a 32-byte key", path.display()))
            })
        }
    }
}

impl CompileCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            key: load_or_create_key(dir)?,
            fingerprint: engine_fingerprint(engine),
        })
    }

    fn artifact_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    fn tag_path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.tag"))
    }

    fn tag_of_file(&self, hash: &str, artifact: &Path) -> std::io::Result<[u8; TAG_LEN]> {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&self.fingerprint);
        hasher.update(hash.as_bytes());
        hasher.update_mmap_rayon(artifact)?;
        Ok(*hasher.finalize().as_bytes())
    }

    /// The path of the verified artifact for `hash`, or `None` (missing,
    /// corrupt, foreign: the entry is removed so that it is rewritten).
    ///
    /// The artifact is kept apart from its tag so that wasmtime can map it
    /// straight from the file instead of copying it.
    pub(crate) fn load(&self, hash: &str) -> Option<PathBuf> {
        let artifact = self.artifact_path(hash);
        let tag_path = self.tag_path(hash);
        let stored = fs::read(&tag_path).ok()?;
        let valid = stored.len() == MAGIC.len() + TAG_LEN
            && &stored[..MAGIC.len()] == MAGIC
            && self
                .tag_of_file(hash, &artifact)
                .is_ok_and(|tag| stored[MAGIC.len()..] == tag);
        if !valid {
            tracing::warn!(path = %artifact.display(), "compile cache entry failed its check; recompiling");
            let _ = fs::remove_file(&tag_path);
            let _ = fs::remove_file(&artifact);
            return None;
        }
        Some(artifact)
    }

    /// Write the artifact for `hash`, then its tag, each atomically: a
    /// reader sees either no entry or a complete one.
    pub(crate) fn store(&self, hash: &str, artifact: &[u8]) -> std::io::Result<()> {
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(artifact)?;
        file.as_file().sync_data()?;
        let artifact_path = self.artifact_path(hash);
        file.persist(&artifact_path).map_err(|error| error.error)?;
        let tag = self.tag_of_file(hash, &artifact_path)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(MAGIC)?;
        file.write_all(&tag)?;
        file.as_file().sync_data()?;
        file.persist(self.tag_path(hash))
            .map_err(|error| error.error)?;
        Ok(())
    }
}
