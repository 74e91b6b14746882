//! The benchmark's large file: pseudo-random bytes generated once per size and cached (with its
//! SHA-256) in the cache dir, `$XDG_CACHE_HOME/broker-bench` or `~/.cache/broker-bench` by default.

use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};

pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("broker-bench")
}

/// Fills `buf` with xorshift output continuing from `state`.
pub fn fill_random(buf: &mut [u8], state: &mut u64) {
    for word in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let bytes = state.to_le_bytes();
        word.copy_from_slice(&bytes[..word.len()]);
    }
}

/// The cached file of `size` bytes and its SHA-256 (hex), generating it when missing.
pub fn ensure_file(cache_dir: &Path, size: u64) -> std::io::Result<(PathBuf, String)> {
    std::fs::create_dir_all(cache_dir)?;
    let path = cache_dir.join(format!("payload-{size}.bin"));
    let sum_path = cache_dir.join(format!("payload-{size}.sha256"));
    if path.metadata().map(|m| m.len() == size).unwrap_or(false) {
        if let Ok(sum) = std::fs::read_to_string(&sum_path) {
            return Ok((path, sum.trim().to_string()));
        }
    }
    eprintln!(
        "generating {size} bytes of random data in {}",
        path.display()
    );
    let partial = path.with_extension("part");
    let mut out = std::fs::File::create(&partial)?;
    let mut sha = sha2::Sha256::new();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        fill_random(&mut buf, &mut state);
        let n = left.min(buf.len() as u64) as usize;
        out.write_all(&buf[..n])?;
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    out.sync_all()?;
    std::fs::rename(&partial, &path)?;
    let sum = hex(&sha.finalize());
    std::fs::write(&sum_path, &sum)?;
    Ok((path, sum))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the whole file once so uploads stream from the page cache, not the disk.
pub fn warm(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}
