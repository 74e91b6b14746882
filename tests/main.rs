//! Black-box integration tests: each starts the real server on 127.0.0.1:0 (through `broker::serve`)
//! and drives it over HTTP. One binary, so CI links once.

mod common;

mod lifecycle;
