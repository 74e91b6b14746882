//! Files on the local disk, under `<data_dir>/blobs/<first two hex digits>/<transfer id>`. Paths derive
//! from ids only, never from file names. Directories are created 0700 and files 0600 whatever the
//! umask: only the broker's user reads what senders sent.
//!
//! Writes go through one blocking thread per upload that receives whole batches; the file is synced once,
//! at commit. Reads use large positioned reads on a blocking thread, handed on as `Bytes`.

use async_trait::async_trait;
use broker_actors::ports::{BlobError, BlobStore, BlobWriter, ByteStream};
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

impl LocalBlobStore {
    pub fn open(data_dir: &Path) -> std::io::Result<LocalBlobStore> {
        let root = data_dir.join("blobs");
        if !root.exists() {
            create_private_dir(&root)?;
        }
        Ok(LocalBlobStore { root })
    }

    fn path(&self, id: Uuid) -> PathBuf {
        let name = id.simple().to_string();
        self.root.join(&name[..2]).join(name)
    }

    /// A part of a transfer's file; `part` is a 32-hex id chosen by the server.
    fn part_path(&self, id: Uuid, part: &str) -> PathBuf {
        part_of(&self.path(id), part)
    }

    /// The list of parts a concatenated file is made of.
    fn manifest_path(&self, id: Uuid) -> PathBuf {
        let mut path = self.path(id);
        path.set_extension("parts");
        path
    }
}

/// The path of a part of the file at `file`.
fn part_of(file: &Path, part: &str) -> PathBuf {
    file.with_extension(format!("part-{part}"))
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
    async fn create(&self, id: Uuid) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = self.path(id);
        let file =
            tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, PathBuf)> {
                let dir = path.parent().expect("blob paths have a parent");
                ensure_dir(dir)?;
                // Unlink first: a writer of an abandoned earlier attempt may still hold the old inode.
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                let file = private_file().write(true).create_new(true).open(&path)?;
                make_private(&file)?;
                Ok((file, dir.to_path_buf()))
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(start_writer(file.0, file.1, 0, false))
    }

    async fn open_append(
        &self,
        id: Uuid,
        part: Option<&str>,
        offset: u64,
    ) -> Result<Box<dyn BlobWriter>, BlobError> {
        let path = match part {
            None if offset == 0 => return self.create(id).await,
            None => self.path(id),
            Some(part) => self.part_path(id, part),
        };
        let file =
            tokio::task::spawn_blocking(move || -> std::io::Result<(std::fs::File, PathBuf)> {
                use std::io::{Seek, SeekFrom};
                if offset == 0 {
                    ensure_dir(path.parent().expect("blob paths have a parent"))?;
                }
                let mut file = private_file()
                    .write(true)
                    .create(offset == 0)
                    .truncate(false)
                    .open(&path)?;
                if offset == 0 {
                    make_private(&file)?;
                }
                if file.metadata()?.len() < offset {
                    return Err(std::io::Error::other(format!(
                        "the stored file is shorter than the durable offset {offset}"
                    )));
                }
                file.set_len(offset)?;
                file.seek(SeekFrom::Start(offset))?;
                Ok((
                    file,
                    path.parent()
                        .expect("blob paths have a parent")
                        .to_path_buf(),
                ))
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(start_writer(file.0, file.1, offset, part.is_some()))
    }

    async fn read(&self, id: Uuid, start: u64, len: u64) -> Result<ByteStream, BlobError> {
        let (path, manifest) = (self.path(id), self.manifest_path(id));
        // Open every segment (the parts a manifest lists, else the file) with its length, then stream
        // the slices of those that overlap the range.
        let files =
            tokio::task::spawn_blocking(move || -> Result<Vec<(std::fs::File, u64)>, BlobError> {
                let parts: Vec<PathBuf> = match std::fs::read_to_string(&manifest) {
                    Ok(text) => text
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(|p| part_of(&path, p))
                        .collect(),
                    Err(_) => vec![path],
                };
                parts
                    .into_iter()
                    .map(|p| {
                        let file = open_for_read(p)?;
                        let size = file.metadata()?.len();
                        Ok((file, size))
                    })
                    .collect()
            })
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        let mut streams = Vec::new();
        let (end, mut segment_start) = (start + len, 0u64);
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
        Ok(Box::pin(futures::StreamExt::flatten(
            futures::stream::iter(streams),
        )))
    }

    async fn read_part(
        &self,
        id: Uuid,
        part: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, BlobError> {
        let path = self.part_path(id, part);
        let file = tokio::task::spawn_blocking(move || open_for_read(path))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))??;
        Ok(Box::pin(read_range(std::sync::Arc::new(file), start, len)))
    }

    async fn concat(&self, id: Uuid, parts: &[String]) -> Result<(), BlobError> {
        let (path, manifest) = (self.path(id), self.manifest_path(id));
        let text: String = parts.iter().map(|p| format!("{p}\n")).collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let temp = manifest.with_extension("parts-new");
            let mut f = private_file()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&temp)?;
            make_private(&f)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&temp, &manifest)?;
            remove_if_present(&path)?;
            sync_dir(manifest.parent().expect("blob paths have a parent"))
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::Io)
    }

    async fn delete_part(&self, id: Uuid, part: &str) -> Result<(), BlobError> {
        let path = self.part_path(id, part);
        tokio::task::spawn_blocking(move || remove_if_present(&path))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
    }

    async fn delete(&self, id: Uuid) -> Result<(), BlobError> {
        let path = self.path(id);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            remove_if_present(&path)?;
            // Parts and the manifest share the file's name as their stem.
            let stem = path
                .file_name()
                .expect("blob paths have a name")
                .to_string_lossy()
                .into_owned();
            let dir = path.parent().expect("blob paths have a parent");
            let entries = match std::fs::read_dir(dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                entries => entries?,
            };
            for entry in entries {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{stem}.")) {
                    remove_if_present(&dir.join(name))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
        .map_err(BlobError::Io)
    }

    async fn available_space(&self) -> Result<Option<u64>, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || free_bytes(&root).map(Some))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
    }

    async fn check(&self) -> Result<(), BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || std::fs::metadata(&root).map(|_| ()))
            .await
            .map_err(|e| BlobError::Io(std::io::Error::other(e)))?
            .map_err(BlobError::Io)
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
