//! A download in progress: `FILE.part` (preallocated, written at positions) and its sidecar
//! `FILE.part.json` recording the ETag, the size and how far each range got. The sidecar only ever
//! claims bytes that were already written, so after a crash a rerun continues each range from there.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often a range's progress reaches the disk at most (the last word of each range always does).
const SAVE_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    pub file_transfer_id: Uuid,
    /// The download's ETag, sent back as `If-Range` so a changed file is not spliced onto old bytes.
    pub etag: Option<String>,
    pub size: u64,
    pub ranges: Vec<RangeProgress>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeProgress {
    pub start: u64,
    /// Exclusive.
    pub end: u64,
    /// Bytes from `start` that are written.
    pub done: u64,
}

impl RangeProgress {
    pub fn is_complete(&self) -> bool {
        self.start + self.done >= self.end
    }
}

impl Sidecar {
    pub fn bytes_done(&self) -> u64 {
        self.ranges.iter().map(|r| r.done).sum()
    }
}

pub struct PartFile {
    part: PathBuf,
    sidecar_path: PathBuf,
    state: Mutex<(Sidecar, Instant)>,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl PartFile {
    /// The unfinished download of this transfer into `output`, if its `.part` and sidecar agree.
    pub fn resume(output: &Path, id: Uuid, size: u64) -> Option<PartFile> {
        let part = with_suffix(output, ".part");
        let sidecar_path = with_suffix(output, ".part.json");
        let sidecar: Sidecar = serde_json::from_slice(&std::fs::read(&sidecar_path).ok()?).ok()?;
        let part_len = std::fs::metadata(&part).ok()?.len();
        let consistent = sidecar.file_transfer_id == id
            && sidecar.size == size
            && part_len == size
            && sidecar
                .ranges
                .iter()
                .all(|r| r.start <= r.end && r.end <= size && r.start + r.done <= r.end);
        consistent.then(|| PartFile {
            part,
            sidecar_path,
            state: Mutex::new((sidecar, Instant::now())),
        })
    }

    /// Starts a new download: an empty `.part` of the full size and its sidecar.
    pub fn create(output: &Path, sidecar: Sidecar) -> anyhow::Result<PartFile> {
        let part = with_suffix(output, ".part");
        let file = std::fs::File::create(&part)
            .with_context(|| format!("cannot create {}", part.display()))?;
        file.set_len(sidecar.size)
            .with_context(|| format!("cannot allocate {}", part.display()))?;
        let part_file = PartFile {
            part,
            sidecar_path: with_suffix(output, ".part.json"),
            state: Mutex::new((sidecar, Instant::now())),
        };
        part_file.save(&part_file.state.lock().expect("sidecar").0)?;
        Ok(part_file)
    }

    pub fn path(&self) -> &Path {
        &self.part
    }

    pub fn snapshot(&self) -> Sidecar {
        self.state.lock().expect("sidecar").0.clone()
    }

    /// Records that range `index` has `done` bytes written (call only after they are). Saved at once
    /// with `now`, else at most every [`SAVE_INTERVAL`].
    pub fn record(&self, index: usize, done: u64, now: bool) -> anyhow::Result<()> {
        let mut state = self.state.lock().expect("sidecar");
        state.0.ranges[index].done = done;
        if now || state.1.elapsed() >= SAVE_INTERVAL {
            self.save(&state.0)?;
            state.1 = Instant::now();
        }
        Ok(())
    }

    /// Writes the sidecar atomically (temporary file, then rename).
    fn save(&self, sidecar: &Sidecar) -> anyhow::Result<()> {
        let temporary = with_suffix(&self.sidecar_path, ".tmp");
        std::fs::write(&temporary, serde_json::to_vec(sidecar)?)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &self.sidecar_path)
            .with_context(|| format!("cannot write {}", self.sidecar_path.display()))
    }

    /// Removes the `.part` and its sidecar.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.sidecar_path);
    }

    /// Moves the finished `.part` to `output` and drops the sidecar.
    pub fn finish(&self, output: &Path) -> anyhow::Result<()> {
        std::fs::rename(&self.part, output).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.part.display(),
                output.display()
            )
        })?;
        let _ = std::fs::remove_file(&self.sidecar_path);
        Ok(())
    }
}
