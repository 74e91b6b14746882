//! MD5 and SHA-256 of a whole local file, in one pass with a fixed buffer.

use anyhow::Context;
use md5::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    pub md5: String,
    pub sha256: String,
}

/// Hashes the file off the async threads.
pub async fn digest_file(path: &Path) -> anyhow::Result<FileDigests> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || digest_blocking(&path))
        .await
        .context("the hashing task failed")?
}

fn digest_blocking(path: &Path) -> anyhow::Result<FileDigests> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut md5 = md5::Md5::new();
    let mut sha256 = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        md5.update(&buffer[..n]);
        sha256.update(&buffer[..n]);
    }
    Ok(FileDigests {
        md5: hex(&md5.finalize()),
        sha256: hex(&sha256.finalize()),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
