//! What `send` remembers between runs, so a rerun after a crash continues the same transfer: one JSON
//! file per (server, file path, size, mtime) in the user's state directory. A file that changed has
//! another key, so it starts a new transfer.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;
use uuid::Uuid;

/// The local file as it was when the transfer started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileIdentity {
    /// Canonical path.
    pub path: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub modified_ns: u128,
}

impl FileIdentity {
    pub fn of(path: &Path) -> anyhow::Result<FileIdentity> {
        let path = std::fs::canonicalize(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let meta =
            std::fs::metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
        anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(FileIdentity {
            path,
            size: meta.len(),
            modified_ns,
        })
    }
}

/// One byte range of the file and the tus upload that carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadPart {
    pub start: u64,
    pub len: u64,
    /// The upload's absolute URL, once created.
    pub location: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendState {
    pub server: String,
    pub file: FileIdentity,
    pub md5: String,
    pub sha256: String,
    pub file_transfer_id: Uuid,
    /// True when the parts are `Upload-Concat: partial` uploads joined by a final POST; false for one
    /// plain upload (a single part).
    pub concatenated: bool,
    pub parts: Vec<UploadPart>,
}

/// An exclusive hold on one (server, file)'s send; released when dropped (or the process ends).
pub struct SendLock {
    _handle: std::fs::File,
}

/// The state directory and the file in it for one (server, file).
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// `--state-dir`, else `$XDG_STATE_HOME/broker`, else `$HOME/.local/state/broker`.
    pub fn new(explicit: Option<PathBuf>) -> anyhow::Result<StateStore> {
        let env_dir = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = explicit
            .or_else(|| env_dir("XDG_STATE_HOME").map(|d| d.join("broker")))
            .or_else(|| env_dir("HOME").map(|h| h.join(".local/state/broker")))
            .context("no state directory: set --state-dir, XDG_STATE_HOME or HOME")?;
        Ok(StateStore { dir })
    }

    /// Holds this (server, file)'s send for as long as the returned lock lives: a second `broker send`
    /// of the same file to the same server at once is refused rather than racing the first over
    /// one state file and one transfer.
    pub fn lock(&self, server: &str, file: &FileIdentity) -> anyhow::Result<SendLock> {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path_for(server, file).with_extension("lock");
        let handle = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a descriptor this function owns; it only takes an advisory lock.
        if unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                anyhow::bail!(
                    "another `broker send` of {} to {server} is running; wait for it to finish (or stop it), then run this again to continue its transfer",
                    file.path.display()
                );
            }
            return Err(error).with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(SendLock { _handle: handle })
    }

    fn path_for(&self, server: &str, file: &FileIdentity) -> PathBuf {
        let mut key = sha2::Sha256::new();
        key.update(server.as_bytes());
        key.update([0]);
        key.update(file.path.as_os_str().as_encoded_bytes());
        key.update([0]);
        key.update(file.size.to_le_bytes());
        key.update(file.modified_ns.to_le_bytes());
        let key = broker_actors::upload::hex(&key.finalize()[..16]);
        self.dir.join(format!("send-{key}.json"))
    }

    /// The state of an unfinished send of this very file (same path, size and mtime) to `server`.
    pub fn load(&self, server: &str, file: &FileIdentity) -> anyhow::Result<Option<SendState>> {
        let path = self.path_for(server, file);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let state: SendState = serde_json::from_str(&text)
            .with_context(|| format!("the state file {} is damaged", path.display()))?;
        // A hash collision or a hand-edited file must not resume someone else's transfer.
        Ok((state.server == server && state.file == *file).then_some(state))
    }

    /// Writes the state atomically (a crash leaves the old or the new one).
    pub fn save(&self, state: &SendState) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.path_for(&state.server, &state.file);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn remove(&self, state: &SendState) -> anyhow::Result<()> {
        let path = self.path_for(&state.server, &state.file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        }
    }

    /// Forgets unfinished sends of the same path to the same server whose file has since changed:
    /// they can never resume.
    pub fn remove_stale(&self, server: &str, file: &FileIdentity) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("send-") && name.ends_with(".json")) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            if let Ok(old) = serde_json::from_str::<SendState>(&text) {
                if old.server == server && old.file.path == file.path && old.file != *file {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}
