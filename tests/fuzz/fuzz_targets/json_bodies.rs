//! The JSON request bodies (initialize, resource configuration, service owner): any bytes decode or
//! give a path-named error without panicking, never bind from a non-object, and never keep more of a
//! list or map than validation can refuse.
#![no_main]

use broker_protocol::json::decode_case_insensitive;
use broker_protocol::resource::{ResourceUpdate, ServiceOwnerInitialize};
use broker_protocol::transfer::{FileTransferInitialize, MAX_PROPERTIES, RECIPIENTS_CEILING};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    // Valid JSON text whose top level is an object (numbers in properties nobody reads stay unparsed,
    // so a value out of f64's range there is fine).
    let is_object = serde_json::from_slice::<&serde_json::value::RawValue>(body)
        .is_ok_and(|raw| raw.get().starts_with('{'));
    match decode_case_insensitive::<FileTransferInitialize>(body) {
        Ok(request) => {
            assert!(is_object);
            assert!(request.recipients.as_ref().is_none_or(|r| r.len() <= RECIPIENTS_CEILING + 1));
            assert!(request.property_list.as_ref().is_none_or(|p| p.len() <= MAX_PROPERTIES + 1));
            let _ = request.validate();
        }
        Err(e) => assert!(e.path.starts_with('$'), "{e}"),
    }
    if decode_case_insensitive::<ResourceUpdate>(body).is_ok() {
        assert!(is_object);
    }
    if decode_case_insensitive::<ServiceOwnerInitialize>(body).is_ok() {
        assert!(is_object);
    }
});
