//! A scanner in memory, standing in for clamd in supervisor tests: it finds the EICAR test string (as
//! every real scanner does) and can be made unreachable.

use crate::ports::scanner::{ScanError, Scanner, Verdict};
use crate::ports::ByteStream;
use async_trait::async_trait;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The standard antivirus test file's signature (a harmless string every scanner reports).
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The name the memory scanner reports for it, as clamd does.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";

#[derive(Default)]
pub struct MemoryScanner {
    unreachable: AtomicBool,
    scans: AtomicUsize,
}

impl MemoryScanner {
    /// Makes every scan answer `Unavailable` (or answer again).
    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable.store(unreachable, Ordering::SeqCst);
    }

    /// How many files were scanned (to the end).
    pub fn scans(&self) -> usize {
        self.scans.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Scanner for MemoryScanner {
    async fn scan(&self, mut file: ByteStream) -> Result<Verdict, ScanError> {
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(ScanError::Unavailable(
                "the memory scanner is switched off".into(),
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = file.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| ScanError::Unreadable(e.to_string()))?);
        }
        self.scans.fetch_add(1, Ordering::SeqCst);
        let infected = bytes.windows(EICAR.len()).any(|w| w == EICAR);
        Ok(if infected {
            Verdict::Infected(vec![EICAR_SIGNATURE.to_string()])
        } else {
            Verdict::Clean
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn stream(parts: Vec<&'static [u8]>) -> ByteStream {
        futures::stream::iter(parts.into_iter().map(|p| Ok(Bytes::from_static(p)))).boxed()
    }

    #[tokio::test]
    async fn the_memory_scanner_finds_eicar_across_chunks_and_passes_other_files() {
        let scanner = MemoryScanner::default();
        let (head, tail) = EICAR.split_at(20);
        let found = scanner
            .scan(stream(vec![b"prefix ", head, tail]))
            .await
            .unwrap();
        assert_eq!(found, Verdict::Infected(vec![EICAR_SIGNATURE.into()]));
        let clean = scanner.scan(stream(vec![b"a report"])).await.unwrap();
        assert_eq!(clean, Verdict::Clean);
        scanner.set_unreachable(true);
        let refused = scanner.scan(stream(vec![b"a report"])).await;
        assert!(matches!(refused, Err(ScanError::Unavailable(_))));
        assert_eq!(scanner.scans(), 2);
    }
}
