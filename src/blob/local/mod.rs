//! Files on the local disk, under `<data_dir>/blobs/<first two hex digits of the id>/`. Paths derive
//! from ids only, never from file names. Directories are created 0700 and files 0600 whatever the
//! umask: only the broker's user reads what senders sent.
//!
//! For a transfer `<id>`:
//! - `<id>`: its completed file, when it was completed from one part (the part file is renamed there:
//!   a single-request upload reads exactly as one file);
//! - `<id>.manifest`: its completed file as a list of segment files (paths relative to this
//!   directory), when it was completed from several parts or composed from pieces: nothing is copied;
//! - `<id>.d/file/` and `<id>.d/piece-<name>/`: sealed parts of the file's and of each piece's upload,
//!   named `<first byte>-<token>` in hex (`.tmp` while written, renamed once synced);
//! - `<id>.d/piece-<name>.done` or `.manifest`: a completed piece;
//! - `<id>.parts` listing `<id>.part-<name>` files: a file joined by an earlier build (read and removed).
//!
//! Writes go through one blocking thread per writer that receives whole batches; each part is synced
//! once, when it is sealed. Reads use large positioned reads on a blocking thread, handed on as `Bytes`.

use async_trait::async_trait;
use broker_actors::ports::{
    BlobError, BlobStore, BlobWriter, ByteStream, ObjectKey, PartName, PartRules, StoredPart,
};
use std::path::{Path, PathBuf};
use uuid::Uuid;

mod layout;
mod reader;
mod writer;

use layout::{total_len, Layout};
use reader::read_range;
use writer::start_writer;

pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn open(data_dir: &Path) -> std::io::Result<LocalBlobStore> {
        let root = data_dir.join("blobs");
        if !root.exists() {
            create_private_dir(&root)?;
        }
        Ok(LocalBlobStore { root })
    }

    fn layout(&self, key: &ObjectKey) -> Layout {
        Layout::of(&self.root, key)
    }
}

fn blocking_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(std::io::Error::other(e))
}

async fn blocking<R: Send + 'static>(
    work: impl FnOnce() -> Result<R, BlobError> + Send + 'static,
) -> Result<R, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(blocking_error)?
}

/// Opens every segment with its length.
fn open_segments(paths: Vec<PathBuf>) -> Result<Vec<(std::fs::File, u64)>, BlobError> {
    paths
        .into_iter()
        .map(|p| {
            let file = open_for_read(p)?;
            let size = file.metadata()?.len();
            Ok((file, size))
        })
        .collect()
}

/// Streams the slices of `[start, start + len)` the segments hold.
fn stream_segments(files: Vec<(std::fs::File, u64)>, start: u64, len: u64) -> ByteStream {
    let mut streams = Vec::new();
    let (end, mut segment_start) = (start.saturating_add(len), 0u64);
    for (file, size) in files {
        let segment_end = segment_start + size;
        let (from, to) = (start.max(segment_start), end.min(segment_end));
        if from < to {
            streams.push(read_range(
                std::sync::Arc::new(file),
                from - segment_start,
                to - from,
            ));
        }
        segment_start = segment_end;
    }
    Box::pin(futures::StreamExt::flatten(futures::stream::iter(streams)))
}

fn remove_dir_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens a file for positioned reads, mapping a missing file to `NotFound`.
fn open_for_read(path: PathBuf) -> Result<std::fs::File, BlobError> {
    std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BlobError::NotFound,
        _ => BlobError::Io(e),
    })
}

/// Creates a blob directory if needed; a new directory's entry is synced so it survives a power loss.
fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        create_private_dir(dir)?;
        sync_dir(dir.parent().expect("blob directories have a parent"))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700, set exactly: the umask could only have
/// narrowed it, and an unusual one could leave the broker unable to write.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        // Another upload created it at the same moment.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Options that create a file readable and writable by the broker's user only (0600, set exactly
/// by [`make_private`] after creation).
fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.mode(0o600);
    options
}

/// Sets a file the broker just created to 0600 whatever the umask made of it.
fn make_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    fn rules(&self) -> PartRules {
        PartRules::NONE
    }

    async fn write_parts(
        &self,
        key: &ObjectKey,
        start: u64,
        token: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let layout = self.layout(key);
        let piece = key.piece.is_some();
        let parts = blocking(move || {
            // This build makes the transfer's directory before it writes any part, so a file in the
            // transfer's place without one is an upload an earlier build was writing in place.
            let earlier = piece || (layout.legacy_upload.exists() && !layout.transfer.exists());
            if !layout.parts.exists() {
                ensure_dir(&layout.dir)?;
                ensure_dir(&layout.transfer)?;
                ensure_dir(&layout.parts)?;
            }
            if earlier {
                layout.adopt_legacy_upload(Some(start))?;
            }
            if layout.segments()?.is_some() {
                return Err(BlobError::Refused("the object is completed".into()));
            }
            Ok(layout.parts)
        })
        .await?;
        // A piece is read back by the in-order hashing soon after it completes: keep it cached.
        Ok(start_writer(parts, start, token, piece))
    }

    async fn list_parts(&self, key: &ObjectKey) -> Result<Vec<StoredPart>, BlobError> {
        let layout = self.layout(key);
        let piece = key.piece.is_some();
        blocking(move || {
            // A piece an earlier build stored (complete, waiting for its final) becomes its first part.
            if piece && layout.legacy_upload.exists() {
                ensure_dir(&layout.transfer)?;
                ensure_dir(&layout.parts)?;
                layout.adopt_legacy_upload(None)?;
            }
            // A completed object's segments may still sit among its parts: they are its, not parts.
            if layout.segments()?.is_some() {
                return Ok(vec![]);
            }
            Ok(layout.sealed()?)
        })
        .await
    }

    async fn read_parts(
        &self,
        key: &ObjectKey,
        names: &[PartName],
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        let layout = self.layout(key);
        let paths: Vec<PathBuf> = names.iter().map(|n| layout.part(*n)).collect();
        let files = blocking(move || open_segments(paths)).await?;
        Ok(stream_segments(files, start, len))
    }

    async fn complete(&self, key: &ObjectKey, names: &[PartName]) -> Result<u64, BlobError> {
        let layout = self.layout(key);
        let names = names.to_vec();
        blocking(move || {
            if let Some(done) = layout.segments()? {
                return total_len(&done);
            }
            let listed = layout.sealed()?;
            let mut at = 0u64;
            for name in &names {
                let part = listed
                    .iter()
                    .find(|p| p.name == *name)
                    .ok_or_else(|| BlobError::Refused(format!("no sealed part {name:?}")))?;
                if name.start != at {
                    return Err(BlobError::Refused(format!(
                        "part {name:?} does not begin at byte {at}"
                    )));
                }
                at += part.len;
            }
            let paths: Vec<PathBuf> = names.iter().map(|n| layout.part(*n)).collect();
            match paths.as_slice() {
                // One part becomes the object itself: reads open one file, as they always did.
                [one] => {
                    std::fs::rename(one, &layout.whole)?;
                    sync_dir(layout.whole.parent().expect("blob paths have a parent"))?;
                }
                [] => {
                    ensure_dir(&layout.dir)?;
                    ensure_dir(&layout.transfer)?;
                    let f = private_file()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .open(&layout.whole)?;
                    make_private(&f)?;
                    f.sync_all()?;
                    sync_dir(layout.whole.parent().expect("blob paths have a parent"))?;
                }
                several => layout.write_manifest(several)?,
            }
            // Parts not chosen (a stale holder's, an abandoned attempt's) were never acknowledged.
            for part in listed.iter().filter(|p| !names.contains(&p.name)) {
                remove_if_present(&layout.part(part.name))?;
            }
            Ok(at)
        })
        .await
    }

    async fn completed_len(&self, key: &ObjectKey) -> Result<Option<u64>, BlobError> {
        let layout = self.layout(key);
        blocking(move || match layout.segments()? {
            Some(paths) => Ok(Some(total_len(&paths)?)),
            None => Ok(None),
        })
        .await
    }

    async fn compose(&self, id: Uuid, pieces: &[String]) -> Result<u64, BlobError> {
        let file = self.layout(&ObjectKey::file(id));
        let layouts: Vec<(String, Layout)> = pieces
            .iter()
            .map(|p| (p.clone(), self.layout(&ObjectKey::piece(id, p))))
            .collect();
        blocking(move || {
            if let Some(done) = file.segments()? {
                return total_len(&done);
            }
            let mut all = Vec::new();
            for (piece, layout) in &layouts {
                let done = layout.segments()?.ok_or_else(|| {
                    BlobError::Refused(format!("the piece {piece} is not completed"))
                })?;
                all.extend(done);
            }
            let total = total_len(&all)?;
            file.write_manifest(&all)?;
            Ok(total)
        })
        .await
    }

    async fn abort(&self, key: &ObjectKey) -> Result<(), BlobError> {
        let layout = self.layout(key);
        blocking(move || {
            remove_dir_if_present(&layout.parts)?;
            remove_if_present(&layout.whole)?;
            remove_if_present(&layout.manifest)?;
            Ok(())
        })
        .await
    }

    async fn read(&self, key: &ObjectKey, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        let layout = self.layout(key);
        let files = blocking(move || {
            let paths = layout.segments()?.ok_or(BlobError::NotFound)?;
            open_segments(paths)
        })
        .await?;
        Ok(stream_segments(files, start, len))
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let layout = self.layout(&ObjectKey::file(id));
        blocking(move || {
            // An earlier build's join: its parts are named in its list.
            for part in layout.legacy_segments().into_iter().flatten() {
                remove_if_present(&part)?;
            }
            for path in layout.legacy_manifest.iter() {
                remove_if_present(path)?;
            }
            remove_if_present(&layout.whole)?;
            remove_if_present(&layout.manifest)?;
            remove_dir_if_present(&layout.transfer)?;
            Ok(())
        })
        .await
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        let root = self.root.clone();
        blocking(move || Ok(free_bytes(&root).map(Some)?)).await
    }

    async fn check(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        blocking(move || Ok(std::fs::metadata(&root).map(|_| ())?)).await
    }
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a valid out-pointer.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}
