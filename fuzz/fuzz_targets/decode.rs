//! Any bytes, decoded as every message of the API: an error or a value,
//! never a panic; a decoded value re-encodes and decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use shim_proto::v1::*;

fn check<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(msg) = M::decode(data) {
        let again = M::decode(msg.encode_to_vec().as_slice());
        assert_eq!(again.ok(), Some(msg));
    }
}

fuzz_target!(|data: &[u8]| {
    check::<CreateRequest>(data);
    check::<CreateResponse>(data);
    check::<DeleteRequest>(data);
    check::<DeleteResponse>(data);
    check::<ExecRequest>(data);
    check::<ExecResponse>(data);
    check::<PtyRequest>(data);
    check::<EventsRequest>(data);
    check::<Event>(data);
    check::<StateResponse>(data);
    check::<KillRequest>(data);
    check::<WaitRequest>(data);
    check::<WaitResponse>(data);
    check::<CloseStdinRequest>(data);
});
