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
use std::io::Write;
use std::path::{Path, PathBuf};
use uuid::Uuid;

mod reader;
mod writer;

use reader::read_range;
use writer::start_writer;

pub struct LocalBlobStore {
    root: PathBuf,
}

/// Where one object's bytes are, relative to its transfer's directory of the blob root.
struct Layout {
    /// `<root>/<xx>`: segment paths in manifests are relative to it.
    dir: PathBuf,
    /// The completed object as one file.
    whole: PathBuf,
    /// The completed object as a list of segments.
    manifest: PathBuf,
    /// The sealed parts of its upload.
    parts: PathBuf,
    /// The transfer's own directory (`<id>.d`).
    transfer: PathBuf,
}

impl LocalBlobStore {
    pub fn open(data_dir: &Path) -> std::io::Result<LocalBlobStore> {
        let root = data_dir.join("blobs");
        if !root.exists() {
            create_private_dir(&root)?;
        }
        Ok(LocalBlobStore { root })
    }

    fn dir(&self, id: Uuid) -> (PathBuf, String) {
        let name = id.simple().to_string();
        (self.root.join(&name[..2]), name)
    }

    fn layout(&self, key: &ObjectKey) -> Layout {
        let (dir, name) = self.dir(key.id);
        let transfer = dir.join(format!("{name}.d"));
        match &key.piece {
            None => Layout {
                whole: dir.join(&name),
                manifest: dir.join(format!("{name}.manifest")),
                parts: transfer.join("file"),
                transfer,
                dir,
            },
            Some(piece) => Layout {
                whole: transfer.join(format!("piece-{piece}.done")),
                manifest: transfer.join(format!("piece-{piece}.manifest")),
                parts: transfer.join(format!("piece-{piece}")),
                transfer,
                dir,
            },
        }
    }
}

/// A part's file name: its first byte and its grant's token, in fixed-width hex.
fn part_file(name: PartName) -> String {
    format!("{:016x}-{:016x}", name.start, name.token)
}

fn parse_part_file(file: &str) -> Option<PartName> {
    let (start, token) = file.split_once('-')?;
    if start.len() != 16 || token.len() != 16 {
        return None;
    }
    Some(PartName {
        start: u64::from_str_radix(start, 16).ok()?,
        token: u64::from_str_radix(token, 16).ok()?,
    })
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

/// The segments of a completed object, in order (none: not completed). A legacy join lists piece
/// names of the transfer's file.
fn segments(layout: &Layout, legacy: Option<&Path>) -> Result<Option<Vec<PathBuf>>, BlobError> {
    if layout.whole.exists() {
        return Ok(Some(vec![layout.whole.clone()]));
    }
    match std::fs::read_to_string(&layout.manifest) {
        Ok(text) => {
            return Ok(Some(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| layout.dir.join(l))
                    .collect(),
            ))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BlobError::Io(e)),
        Err(_) => {}
    }
    if let Some(legacy) = legacy {
        if let Ok(text) = std::fs::read_to_string(legacy) {
            let stem = layout.whole.clone();
            return Ok(Some(
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(|p| stem.with_extension(format!("part-{p}")))
                    .collect(),
            ));
        }
    }
    Ok(None)
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

/// Writes `lines` as the manifest at `path`, durably, replacing it atomically.
fn write_manifest(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let temp = path.with_extension("manifest-new");
    let mut f = private_file()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temp)?;
    make_private(&f)?;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&temp, path)?;
    sync_dir(path.parent().expect("blob paths have a parent"))
}

/// `path` relative to `dir` (segments are named relative to the transfer's directory of the root).
fn relative(path: &Path, dir: &Path) -> String {
    path.strip_prefix(dir)
        .expect("segments live under their transfer's directory")
        .to_string_lossy()
        .into_owned()
}

fn remove_dir_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn list_sealed(parts: &Path) -> std::io::Result<Vec<StoredPart>> {
    let entries = match std::fs::read_dir(parts) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        entries => entries?,
    };
    let mut listed = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(name) = parse_part_file(&file) {
            listed.push(StoredPart {
                name,
                len: entry.metadata()?.len(),
            });
        }
    }
    listed.sort_by_key(|p| p.name);
    Ok(listed)
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
        let parts = layout.parts.clone();
        let legacy = self.legacy_upload(key);
        let piece = key.piece.is_some();
        blocking(move || {
            // This build makes the transfer's directory before it writes any part, so a file in the
            // transfer's place without one is an upload an earlier build was writing in place.
            let earlier = piece || (legacy.exists() && !layout.transfer.exists());
            if !parts.exists() {
                ensure_dir(&layout.dir)?;
                ensure_dir(&layout.transfer)?;
                ensure_dir(&parts)?;
            }
            if earlier {
                adopt_legacy_upload(&legacy, &parts, Some(start))?;
            }
            if segments(&layout, None)?.is_some() {
                return Err(BlobError::Refused("the object is completed".into()));
            }
            Ok(())
        })
        .await?;
        // A piece is read back by the in-order hashing soon after it completes: keep it cached.
        let keep_cached = key.piece.is_some();
        start_writer(self.layout(key).parts, start, token, keep_cached).map_err(BlobError::Io)
    }

    async fn list_parts(&self, key: &ObjectKey) -> Result<Vec<StoredPart>, BlobError> {
        let layout = self.layout(key);
        let legacy = self.legacy_manifest(key);
        // A piece an earlier build stored (complete, waiting for its final) becomes its first part.
        let legacy_piece = key.piece.is_some().then(|| self.legacy_upload(key));
        blocking(move || {
            if let Some(legacy_piece) = &legacy_piece {
                if legacy_piece.exists() {
                    ensure_dir(&layout.transfer)?;
                    ensure_dir(&layout.parts)?;
                    adopt_legacy_upload(legacy_piece, &layout.parts, None)?;
                }
            }
            // A completed object's segments may still sit among its parts: they are its, not parts.
            if segments(&layout, legacy.as_deref())?.is_some() {
                return Ok(vec![]);
            }
            Ok(list_sealed(&layout.parts)?)
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
        let dir = self.layout(key).parts;
        let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(part_file(*n))).collect();
        let files = blocking(move || open_segments(paths)).await?;
        Ok(stream_segments(files, start, len))
    }

    async fn complete(&self, key: &ObjectKey, names: &[PartName]) -> Result<u64, BlobError> {
        let layout = self.layout(key);
        let legacy = self.legacy_manifest(key);
        let names = names.to_vec();
        blocking(move || {
            if let Some(done) = segments(&layout, legacy.as_deref())? {
                return total_len(&done);
            }
            let listed = list_sealed(&layout.parts)?;
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
            let paths: Vec<PathBuf> = names
                .iter()
                .map(|n| layout.parts.join(part_file(*n)))
                .collect();
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
                several => {
                    let lines: Vec<String> =
                        several.iter().map(|p| relative(p, &layout.dir)).collect();
                    write_manifest(&layout.manifest, &lines)?;
                }
            }
            // Parts not chosen (a stale holder's, an abandoned attempt's) were never acknowledged.
            for part in listed.iter().filter(|p| !names.contains(&p.name)) {
                remove_if_present(&layout.parts.join(part_file(part.name)))?;
            }
            Ok(at)
        })
        .await
    }

    async fn completed_len(&self, key: &ObjectKey) -> Result<Option<u64>, BlobError> {
        let layout = self.layout(key);
        let legacy = self.legacy_manifest(key);
        blocking(move || match segments(&layout, legacy.as_deref())? {
            Some(paths) => Ok(Some(total_len(&paths)?)),
            None => Ok(None),
        })
        .await
    }

    async fn compose(&self, id: Uuid, pieces: &[String]) -> Result<u64, BlobError> {
        let file = self.layout(&ObjectKey::file(id));
        let legacy = self.legacy_manifest(&ObjectKey::file(id));
        let layouts: Vec<(String, Layout)> = pieces
            .iter()
            .map(|p| (p.clone(), self.layout(&ObjectKey::piece(id, p))))
            .collect();
        blocking(move || {
            if let Some(done) = segments(&file, legacy.as_deref())? {
                return total_len(&done);
            }
            let mut all = Vec::new();
            for (piece, layout) in &layouts {
                let done = segments(layout, None)?.ok_or_else(|| {
                    BlobError::Refused(format!("the piece {piece} is not completed"))
                })?;
                all.extend(done);
            }
            let total = total_len(&all)?;
            let lines: Vec<String> = all.iter().map(|p| relative(p, &file.dir)).collect();
            write_manifest(&file.manifest, &lines)?;
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
        let legacy = self.legacy_manifest(key);
        let files = blocking(move || {
            let paths = segments(&layout, legacy.as_deref())?.ok_or(BlobError::NotFound)?;
            open_segments(paths)
        })
        .await?;
        Ok(stream_segments(files, start, len))
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let layout = self.layout(&ObjectKey::file(id));
        let legacy = self.legacy_manifest(&ObjectKey::file(id));
        blocking(move || {
            if let Some(legacy) = &legacy {
                // An earlier build's join: its parts are named in its list.
                if let Ok(text) = std::fs::read_to_string(legacy) {
                    for p in text.lines().filter(|l| !l.is_empty()) {
                        remove_if_present(&layout.whole.with_extension(format!("part-{p}")))?;
                    }
                }
                remove_if_present(legacy)?;
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

/// Makes an upload an earlier build wrote in place (at `legacy`) the first part of the upload in
/// `parts`, named by token 0 (older than any grant): cut to `acknowledged` bytes when a writer goes on
/// from there (what lay past it was never acknowledged, as that build cut it off too).
fn adopt_legacy_upload(
    legacy: &Path,
    parts: &Path,
    acknowledged: Option<u64>,
) -> Result<(), BlobError> {
    let adopted = parts.join(part_file(PartName { start: 0, token: 0 }));
    if legacy.exists() {
        std::fs::rename(legacy, &adopted)?;
        sync_dir(parts)?;
        sync_dir(legacy.parent().expect("blob paths have a parent"))?;
    }
    let Some(acknowledged) = acknowledged.filter(|a| *a > 0) else {
        return Ok(());
    };
    let len = match std::fs::metadata(&adopted) {
        Ok(meta) => meta.len(),
        Err(_) => return Ok(()),
    };
    if len < acknowledged {
        return Err(BlobError::Refused(format!(
            "the stored upload is shorter than the {acknowledged} bytes acknowledged"
        )));
    }
    if len > acknowledged {
        let file = std::fs::OpenOptions::new().write(true).open(&adopted)?;
        file.set_len(acknowledged)?;
        file.sync_all()?;
    }
    Ok(())
}

impl LocalBlobStore {
    /// Where an earlier build wrote an upload in progress: the transfer's file itself (told from a
    /// completed file by the transfer's directory, which this build always makes first), or a part
    /// file beside it.
    fn legacy_upload(&self, key: &ObjectKey) -> PathBuf {
        let (dir, name) = self.dir(key.id);
        match &key.piece {
            None => dir.join(&name),
            Some(piece) => dir.join(format!("{name}.part-{piece}")),
        }
    }

    /// The list an earlier build wrote for a joined file (transfers' files only).
    fn legacy_manifest(&self, key: &ObjectKey) -> Option<PathBuf> {
        key.piece.is_none().then(|| {
            let (dir, name) = self.dir(key.id);
            dir.join(format!("{name}.parts"))
        })
    }
}

fn total_len(paths: &[PathBuf]) -> Result<u64, BlobError> {
    let mut total = 0;
    for path in paths {
        total += std::fs::metadata(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => BlobError::NotFound,
                _ => BlobError::Io(e),
            })?
            .len();
    }
    Ok(total)
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
