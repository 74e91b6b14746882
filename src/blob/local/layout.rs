//! Where one object's bytes are on disk (see the module above for the whole layout), and what reads
//! and writes that layout: completed objects as one file or a manifest of segments, sealed parts named
//! by first byte and token, and what an earlier build left.

use super::{make_private, private_file, sync_dir};
use broker_actors::ports::{BlobError, ObjectKey, PartName, StoredPart};
use std::io::Write;
use std::path::{Path, PathBuf};

pub(super) struct Layout {
    /// `<root>/<xx>`: segment paths in manifests are relative to it.
    pub(super) dir: PathBuf,
    /// The completed object as one file.
    pub(super) whole: PathBuf,
    /// The completed object as a list of segments.
    pub(super) manifest: PathBuf,
    /// The sealed parts of its upload.
    pub(super) parts: PathBuf,
    /// The transfer's own directory (`<id>.d`).
    pub(super) transfer: PathBuf,
    /// Where an earlier build wrote this object's upload in place: the transfer's file itself (told
    /// from a completed file by the transfer's directory, which this build always makes first), or a
    /// part file beside it.
    pub(super) legacy_upload: PathBuf,
    /// The list an earlier build wrote for a joined file (transfers' files only).
    pub(super) legacy_manifest: Option<PathBuf>,
}

impl Layout {
    pub(super) fn of(root: &Path, key: &ObjectKey) -> Layout {
        let name = key.id.simple().to_string();
        let dir = root.join(&name[..2]);
        let transfer = dir.join(format!("{name}.d"));
        match &key.piece {
            None => Layout {
                whole: dir.join(&name),
                manifest: dir.join(format!("{name}.manifest")),
                parts: transfer.join("file"),
                legacy_upload: dir.join(&name),
                legacy_manifest: Some(dir.join(format!("{name}.parts"))),
                transfer,
                dir,
            },
            Some(piece) => Layout {
                whole: transfer.join(format!("piece-{piece}.done")),
                manifest: transfer.join(format!("piece-{piece}.manifest")),
                parts: transfer.join(format!("piece-{piece}")),
                legacy_upload: dir.join(format!("{name}.part-{piece}")),
                legacy_manifest: None,
                transfer,
                dir,
            },
        }
    }

    /// The segments of the completed object, in order (none: not completed).
    pub(super) fn segments(&self) -> Result<Option<Vec<PathBuf>>, BlobError> {
        if self.whole.exists() {
            return Ok(Some(vec![self.whole.clone()]));
        }
        match std::fs::read_to_string(&self.manifest) {
            Ok(text) => return Ok(Some(lines(&text).map(|l| self.dir.join(l)).collect())),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(BlobError::Io(e)),
            Err(_) => {}
        }
        Ok(self.legacy_segments())
    }

    /// The part files of a file an earlier build joined, in order, if it did.
    pub(super) fn legacy_segments(&self) -> Option<Vec<PathBuf>> {
        let text = std::fs::read_to_string(self.legacy_manifest.as_ref()?).ok()?;
        Some(
            lines(&text)
                .map(|p| self.whole.with_extension(format!("part-{p}")))
                .collect(),
        )
    }

    /// Writes the manifest of the object made of these segments, durably, replacing it atomically.
    pub(super) fn write_manifest(&self, segments: &[PathBuf]) -> std::io::Result<()> {
        let temp = self.manifest.with_extension("manifest-new");
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        make_private(&f)?;
        let text: String = segments
            .iter()
            .map(|p| {
                let relative = p
                    .strip_prefix(&self.dir)
                    .expect("segments live under their transfer's directory");
                format!("{}\n", relative.to_string_lossy())
            })
            .collect();
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&temp, &self.manifest)?;
        sync_dir(self.manifest.parent().expect("blob paths have a parent"))
    }

    /// The path of one sealed part.
    pub(super) fn part(&self, name: PartName) -> PathBuf {
        self.parts.join(part_file(name))
    }

    /// The sealed parts of the upload, in name order.
    pub(super) fn sealed(&self) -> std::io::Result<Vec<StoredPart>> {
        let entries = match std::fs::read_dir(&self.parts) {
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

    /// Makes the upload an earlier build wrote in place the first part of this upload, named by token
    /// 0 (older than any grant); cuts that part to `acknowledged` bytes when a writer goes on from
    /// there (what lay past it was never acknowledged, as that build cut it off too).
    pub(super) fn adopt_legacy_upload(&self, acknowledged: Option<u64>) -> Result<(), BlobError> {
        let adopted = self.part(PartName { start: 0, token: 0 });
        if self.legacy_upload.exists() {
            std::fs::rename(&self.legacy_upload, &adopted)?;
            sync_dir(&self.parts)?;
            sync_dir(&self.dir)?;
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
}

fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.is_empty())
}

/// A part's file name: its first byte and its grant's token, in fixed-width hex.
pub(super) fn part_file(name: PartName) -> String {
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

/// The bytes the files at `paths` hold together.
pub(super) fn total_len(paths: &[PathBuf]) -> Result<u64, BlobError> {
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
