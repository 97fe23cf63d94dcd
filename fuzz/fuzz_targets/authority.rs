//! Any bytes after the HTTP/2 preface, through the `:authority` adapter of
//! unix connections: never a panic, and the same output whether the bytes
//! arrive in one piece or two (a read boundary changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shim_transport_grpc::authority::Rewriter;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(
    init: {
        // The HPACK crate panics on some malformed blocks; the adapter
        // catches that (and steps aside), so the panic must not abort here.
        // A panic anywhere else still fails the run: it escapes the target.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    let mut input = PREFACE.to_vec();
    input.extend_from_slice(rest);
    let mut whole = Vec::new();
    Rewriter::new().feed(&input, &mut whole);
    let at = usize::from(split) * input.len() / 256;
    let (a, b) = input.split_at(at);
    let mut pieces = Vec::new();
    let mut rewriter = Rewriter::new();
    rewriter.feed(a, &mut pieces);
    rewriter.feed(b, &mut pieces);
    assert_eq!(whole, pieces);
});
