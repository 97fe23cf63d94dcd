//! What the shim reads from the runtime: its JSON log, its stderr, pid files,
//! and a bundle's config.json. Any content is handled without a panic, and
//! error messages stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_core::runc::{error_message, parse_pid};
use shim_core::spec::ProcessDefaults;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (log, stderr) = text.split_at(text.char_indices().nth(text.chars().count() / 2).map(|(i, _)| i).unwrap_or(0));
    let message = error_message(log, stderr, 1);
    assert!(message.len() <= 4096);
    if let Ok(pid) = parse_pid(data) {
        assert!(pid > 0);
    }
    let _ = ProcessDefaults::from_config_json(data);
});
