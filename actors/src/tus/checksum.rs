//! The tus checksum extension: a PATCH body with `Upload-Checksum` is kept only if it has that digest.

use broker_protocol::tus_headers::ChecksumAlgorithm;
use sha2::Digest;

/// The digest a body must have, and the hasher that checks it as the body streams.
pub struct UploadChecksum {
    hasher: Hasher,
    expected: Vec<u8>,
}

enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
}

impl UploadChecksum {
    pub fn new(algorithm: ChecksumAlgorithm, expected: Vec<u8>) -> UploadChecksum {
        let hasher = match algorithm {
            ChecksumAlgorithm::Sha1 => Hasher::Sha1(Default::default()),
            ChecksumAlgorithm::Md5 => Hasher::Md5(Default::default()),
            ChecksumAlgorithm::Sha256 => Hasher::Sha256(Default::default()),
        };
        UploadChecksum { hasher, expected }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha1(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
            Hasher::Sha256(h) => h.update(bytes),
        }
    }

    /// Whether the bytes seen have the expected digest.
    pub(crate) fn matches(self) -> bool {
        let digest = match self.hasher {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        };
        digest == self.expected
    }
}
