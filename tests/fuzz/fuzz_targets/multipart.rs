//! The initialize-and-upload form reader: any body with the boundary `X` reads to its end or fails
//! with an error, without panicking; the file parts are drained as the upload would stream them.
#![no_main]

use broker::http::form::{FormMetadata, FormReader};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

// The first byte sets how the rest arrives: in pieces of that many bytes (plus one), as a network
// would split it.
fuzz_target!(|input: &[u8]| {
    let Some((&split, body)) = input.split_first() else {
        return;
    };
    let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = body
        .chunks(split as usize + 1)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    runtime().block_on(async move {
        let stream = futures::stream::iter(pieces);
        let mut form = FormReader::from_stream(stream, "X".to_string());
        let mut metadata = FormMetadata::new(64 << 10);
        for _ in 0..8 {
            match form.next_file(&mut metadata).await {
                Ok(Some(mut file)) => while let Ok(Some(_)) = file.chunk().await {},
                Ok(None) | Err(_) => break,
            }
        }
        let _ = metadata.request().validate();
    });
});
