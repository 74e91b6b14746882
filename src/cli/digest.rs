//! MD5 and SHA-256 of a whole local file, in one read, each hash on its own thread (the server's
//! upload pipeline, so a large file is hashed at the speed of single-core MD5).

use anyhow::Context;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigests {
    pub md5: String,
    pub sha256: String,
}

pub async fn digest_file(path: &Path) -> anyhow::Result<FileDigests> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
    let stored = broker_actors::upload::hash_stream(stream)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .finish();
    Ok(FileDigests {
        md5: stored.md5,
        sha256: stored.sha256,
    })
}
