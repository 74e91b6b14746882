//! Small helpers shared across the server.

pub use broker_actors::upload::sha256_hex;
