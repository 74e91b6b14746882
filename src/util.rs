//! Small helpers shared across the server.

use sha2::Digest;

pub fn sha256_hex(bytes: &[u8]) -> String {
    broker_actors::upload::hex(&sha2::Sha256::digest(bytes))
}
