//! Scanner adapters: the ClamAV daemon (the scanner port of the actors crate).

pub mod clamd;
