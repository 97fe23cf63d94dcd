//! Request validation: any decoded ExecRequest either builds an OCI process
//! with an absolute cwd and non-empty args, or is refused with
//! INVALID_ARGUMENT; ids and paths likewise.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shim_core::spec::{exec_process, validate_id, ProcessDefaults};
use shim_core::Code;
use shim_proto::v1::ExecRequest;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if validate_id(&text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 128 && !text.contains('/') && !text.starts_with('.'));
    }
    match shim_core::io::validate_path("stdout", &text) {
        Ok(()) => assert!(text.is_empty() || text.starts_with('/')),
        Err(e) => assert_eq!(e.code(), Code::InvalidArgument),
    }
    if let Ok(req) = ExecRequest::decode(data) {
        let defaults = ProcessDefaults { cwd: "/".into(), ..Default::default() };
        match exec_process(&req, &defaults) {
            Ok(process) => {
                let cwd = process.get("cwd").and_then(|c| c.as_str()).unwrap_or("");
                assert!(cwd.starts_with('/'));
                assert!(process.get("args").and_then(|a| a.as_array()).is_some_and(|a| !a.is_empty()));
            }
            Err(e) => assert_eq!(e.code(), Code::InvalidArgument),
        }
    }
});
