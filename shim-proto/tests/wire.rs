//! Golden wire bytes, worked out by hand from the protobuf encoding rules:
//! a key is the varint `(field_number << 3) | wire_type`, wire type 0 is a
//! varint and 2 is length-delimited (strings, messages, packed repeated
//! scalars); proto3 leaves fields at their default value off the wire.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use prost::Message;
use shim_proto::v1::*;
use shim_proto::EnumExt;

/// Asserts encoding gives exactly `bytes` and decoding `bytes` gives `msg`.
fn golden<M: Message + Default + PartialEq + std::fmt::Debug>(msg: M, bytes: &[u8]) {
    assert_eq!(msg.encode_to_vec(), bytes, "encoding of {msg:?}");
    let decoded = M::decode(bytes);
    assert_eq!(decoded.as_ref().ok(), Some(&msg), "decoding of {bytes:02x?}");
}

fn create_request() -> CreateRequest {
    CreateRequest {
        id: "c1".into(),
        bundle: "/b".into(),
        runtime: "runc".into(),
        no_pivot: true,
        terminal: true,
        stdin: "/i".into(),
        stdout: "/o".into(),
        stderr: "/e".into(),
        checkpoint: String::new(),
        runtime_root: String::new(),
        systemd_cgroup: false,
    }
}

const CREATE_REQUEST: &[u8] = &[
    0x0a, 0x02, b'c', b'1', // 1: id, LEN 2
    0x12, 0x02, b'/', b'b', // 2: bundle
    0x1a, 0x04, b'r', b'u', b'n', b'c', // 3: runtime
    0x20, 0x01, // 4: no_pivot, VARINT 1
    0x28, 0x01, // 5: terminal
    0x32, 0x02, b'/', b'i', // 6: stdin
    0x3a, 0x02, b'/', b'o', // 7: stdout
    0x42, 0x02, b'/', b'e', // 8: stderr
];

fn user() -> User {
    User { uid: 1000, gid: 5, additional_gids: vec![10, 20] }
}

const USER: &[u8] = &[
    0x08, 0xe8, 0x07, // 1: uid 1000 = 0b111_1101000 -> e8 07
    0x10, 0x05, // 2: gid
    0x1a, 0x02, 0x0a, 0x14, // 3: additional_gids, packed: LEN 2, 10, 20
];

fn rlimit() -> Rlimit {
    Rlimit { r#type: "RLIMIT_NOFILE".into(), hard: 1024, soft: 512 }
}

const RLIMIT: &[u8] = &[
    0x0a, 0x0d, b'R', b'L', b'I', b'M', b'I', b'T', b'_', b'N', b'O', b'F', b'I', b'L', b'E', 0x10, 0x80,
    0x08, // 2: hard 1024 = 0x400 -> 80 08
    0x18, 0x80, 0x04, // 3: soft 512 = 0x200 -> 80 04
];

fn exec_request() -> ExecRequest {
    ExecRequest {
        terminal: true,
        stdin: "/i".into(),
        stdout: "/o".into(),
        stderr: "/e".into(),
        selinux_label: "l".into(),
        user: Some(user()),
        args: vec!["sh".into(), "-c".into()],
        env: vec!["A=1".into()],
        cwd: "/".into(),
        capabilities: vec!["CAP_KILL".into()],
        rlimits: vec![rlimit()],
        no_new_privileges: true,
        apparmor_profile: "p".into(),
        // The extension, unset: the seed's bytes.
        process: Vec::new(),
    }
}

fn exec_request_bytes() -> Vec<u8> {
    let mut b = vec![
        0x08, 0x01, // 1: terminal
        0x12, 0x02, b'/', b'i', // 2: stdin
        0x1a, 0x02, b'/', b'o', // 3: stdout
        0x22, 0x02, b'/', b'e', // 4: stderr
        0x2a, 0x01, b'l', // 5: selinux_label
        0x32, 0x09, // 6: user, LEN 9
    ];
    b.extend_from_slice(USER);
    b.extend_from_slice(&[
        0x3a, 0x02, b's', b'h', // 7: args[0]
        0x3a, 0x02, b'-', b'c', // 7: args[1]
        0x42, 0x03, b'A', b'=', b'1', // 8: env
        0x4a, 0x01, b'/', // 9: cwd
        0x52, 0x08, b'C', b'A', b'P', b'_', b'K', b'I', b'L', b'L', // 10: capabilities
        0x5a, 0x15, // 11: rlimits, LEN 21
    ]);
    b.extend_from_slice(RLIMIT);
    b.extend_from_slice(&[
        0x60, 0x01, // 12: no_new_privileges
        0x6a, 0x01, b'p', // 13: apparmor_profile
    ]);
    b
}

#[test]
fn create() {
    golden(create_request(), CREATE_REQUEST);
    golden(CreateResponse { pid: 300 }, &[0x08, 0xac, 0x02]); // 300 = 0b10_0101100
}

#[test]
fn empty_messages_encode_to_nothing() {
    golden(StartRequest {}, &[]);
    golden(EventsRequest::default(), &[]);
    golden(StateRequest {}, &[]);
    golden(CreateRequest::default(), &[]);
}

#[test]
fn delete() {
    golden(DeleteRequest { pid: 1 }, &[0x08, 0x01]);
    golden(DeleteRequest { pid: u32::MAX }, &[0x08, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    golden(DeleteResponse { exit_status: 137 }, &[0x08, 0x89, 0x01]);
}

#[test]
fn exec() {
    golden(user(), USER);
    golden(rlimit(), RLIMIT);
    golden(exec_request(), &exec_request_bytes());
    golden(ExecResponse { pid: 7 }, &[0x08, 0x07]);
}

#[test]
fn pty() {
    golden(PtyRequest { pid: 7, width: 80, height: 24 }, &[0x08, 0x07, 0x10, 0x50, 0x18, 0x18]);
}

#[test]
fn events() {
    golden(Event::new("c1", EventType::Oom, 7, 0), &[0x0a, 0x02, b'c', b'1', 0x10, 0x01, 0x18, 0x07]);
    // EXIT is enum value 0, the default, so the type field is absent.
    golden(Event::new("c1", EventType::Exit, 7, 137), &[0x0a, 0x02, b'c', b'1', 0x18, 0x07, 0x20, 0x89, 0x01]);
    golden(Event::new("", EventType::ExecAdded, 0, 0), &[0x10, 0x04]);
    golden(Event::new("", EventType::Created, 0, 0), &[0x10, 0x02]);
    golden(Event::new("", EventType::Started, 0, 0), &[0x10, 0x03]);
}

#[test]
fn state() {
    golden(Process::new(7, State::Running), &[0x08, 0x07, 0x10, 0x01]);
    golden(
        StateResponse {
            id: "c1".into(),
            processes: vec![Process::new(7, State::Running), Process::new(9, State::Stopped)],
        },
        &[
            0x0a, 0x02, b'c', b'1', // 1: id
            0x12, 0x04, 0x08, 0x07, 0x10, 0x01, // 2: processes[0]
            0x12, 0x02, 0x08, 0x09, // 2: processes[1], state STOPPED = 0 absent
        ],
    );
}

#[test]
fn extensions() {
    golden(KillRequest { pid: 7, signal: 9, all: true }, &[0x08, 0x07, 0x10, 0x09, 0x18, 0x01]);
    golden(WaitRequest { pid: 7 }, &[0x08, 0x07]);
    golden(WaitResponse { exit_status: 3 }, &[0x08, 0x03]);
    golden(CloseStdinRequest { pid: 7 }, &[0x08, 0x07]);
}

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: M) {
    let bytes = msg.encode_to_vec();
    assert_eq!(bytes.len(), msg.encoded_len());
    assert_eq!(M::decode(bytes.as_slice()).ok(), Some(msg));
}

#[test]
fn round_trip_every_message() {
    round_trip(create_request());
    round_trip(CreateResponse { pid: u32::MAX });
    round_trip(StartRequest {});
    round_trip(DeleteRequest { pid: 42 });
    round_trip(DeleteResponse { exit_status: 255 });
    round_trip(exec_request());
    round_trip(user());
    round_trip(rlimit());
    round_trip(Rlimit { r#type: "RLIMIT_CORE".into(), hard: u64::MAX, soft: u64::MAX });
    round_trip(ExecResponse { pid: 1 });
    round_trip(PtyRequest { pid: 1, width: u32::MAX, height: 0 });
    round_trip(EventsRequest { since: Some(u64::MAX) });
    round_trip(Event::new("x".repeat(300), EventType::Exit, 1, 128 + 9));
    round_trip(StateRequest {});
    round_trip(StateResponse {
        id: "c".into(),
        processes: (1..100).map(|p| Process::new(p, State::Running)).collect(),
    });
    round_trip(Process::new(3, State::Stopped));
    round_trip(KillRequest { pid: 1, signal: 15, all: false });
    round_trip(WaitRequest { pid: 2 });
    round_trip(WaitResponse { exit_status: 1 });
    round_trip(CloseStdinRequest { pid: 3 });
}

#[test]
fn truncated_input_is_an_error() {
    // Cut inside a string.
    let cut = CREATE_REQUEST.len() - 1;
    assert!(CreateRequest::decode(CREATE_REQUEST.get(..cut).unwrap_or_default()).is_err());
    // Cut inside a varint: the continuation bit promises another byte.
    assert!(CreateResponse::decode(&[0x08, 0xac][..]).is_err());
    // Cut inside a nested message.
    let exec = exec_request_bytes();
    assert!(ExecRequest::decode(exec.get(..20).unwrap_or_default()).is_err());
    // A key without its value.
    assert!(DeleteRequest::decode(&[0x08][..]).is_err());
    // Every prefix of every golden message decodes or fails, never panics.
    for bytes in [CREATE_REQUEST, USER, RLIMIT, exec.as_slice()] {
        for n in 0..bytes.len() {
            let prefix = bytes.get(..n).unwrap_or_default();
            let _ = CreateRequest::decode(prefix);
            let _ = ExecRequest::decode(prefix);
            let _ = StateResponse::decode(prefix);
        }
    }
}

#[test]
fn garbage_input_is_an_error() {
    // Wire type 7 does not exist.
    assert!(StateRequest::decode(&[0x0f][..]).is_err());
    // Field number 0 is invalid.
    assert!(StateRequest::decode(&[0x00, 0x01][..]).is_err());
    // A length that runs past the end of the buffer.
    assert!(CreateRequest::decode(&[0x0a, 0x7f, b'a'][..]).is_err());
    // A string field that is not UTF-8.
    assert!(CreateRequest::decode(&[0x0a, 0x02, 0xff, 0xfe][..]).is_err());
    // A varint longer than ten bytes.
    assert!(
        DeleteRequest::decode(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..]).is_err()
    );
    // A string where a varint was declared (wrong wire type for field 1).
    assert!(DeleteRequest::decode(&[0x0a, 0x01, b'x'][..]).is_err());

    // Pseudo-random buffers: any result is fine, a panic is not.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let len = (seed % 64) as usize;
        let buf: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = CreateRequest::decode(buf.as_slice());
        let _ = ExecRequest::decode(buf.as_slice());
        let _ = Event::decode(buf.as_slice());
        let _ = StateResponse::decode(buf.as_slice());
        let _ = KillRequest::decode(buf.as_slice());
    }
}

#[test]
fn unknown_fields_are_skipped() {
    // Field 15 (varint) is not part of DeleteRequest: a newer peer may send it.
    assert_eq!(DeleteRequest::decode(&[0x78, 0x05, 0x08, 0x02][..]).ok(), Some(DeleteRequest { pid: 2 }));
}

#[test]
fn enums_convert_both_ways() {
    for (value, ty) in [
        (0, EventType::Exit),
        (1, EventType::Oom),
        (2, EventType::Created),
        (3, EventType::Started),
        (4, EventType::ExecAdded),
        (5, EventType::ContainerPaused),
        (6, EventType::ContainerResumed),
    ] {
        assert_eq!(EventType::from_i32_checked(value), Ok(ty));
        assert_eq!(i32::from(ty), value);
    }
    assert_eq!(State::from_i32_checked(0), Ok(State::Stopped));
    assert_eq!(State::from_i32_checked(1), Ok(State::Running));
    assert_eq!(State::from_i32_checked(2), Ok(State::Paused));
    let err = State::from_i32_checked(7).err();
    assert_eq!(err.map(|e| e.to_string()), Some("unknown State value 7".to_string()));
    assert!(EventType::from_i32_checked(-1).is_err());
    let ev = Event { r#type: 7, ..Default::default() };
    assert!(ev.event_type().is_err());
    let p = Process { state: 3, ..Default::default() };
    assert!(p.process_state().is_err());
}

#[test]
fn descriptor_set_names_the_service() {
    // The package and service names appear as length-delimited strings.
    let bytes = shim_proto::FILE_DESCRIPTOR_SET;
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"containerd.shim.v1"));
    assert!(has(b"CloseStdin"));
}

/// The seed proto, carried unchanged in `proto/seed/`, and ours describe the
/// same messages, enums and RPCs: ours only adds.
#[test]
fn seed_messages_and_rpcs_are_unchanged() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let seed = protox::compile(["shim.proto"], [format!("{dir}/seed"), dir.to_string()]).unwrap();
    let ours = protox::compile(["shim.proto"], [dir]).unwrap();
    let file =
        |set: &prost_types::FileDescriptorSet| set.file.iter().find(|f| f.name() == "shim.proto").cloned().unwrap();
    let (seed, ours) = (file(&seed), file(&ours));
    assert_eq!(seed.package(), ours.package());
    for m in &seed.message_type {
        let mine = ours.message_type.iter().find(|o| o.name() == m.name()).cloned().unwrap();
        // Extensions may add fields (with new numbers); the seed's fields stay as they are.
        let seed_fields: Vec<_> = mine.field.iter().take(m.field.len()).cloned().collect();
        assert_eq!(seed_fields, m.field, "fields of message {} changed", m.name());
        for extra in mine.field.iter().skip(m.field.len()) {
            assert!(m.field.iter().all(|f| f.number() != extra.number()), "{} reuses a field number", m.name());
        }
    }
    for e in &seed.enum_type {
        // Extensions may append values (with new numbers); the seed's stay.
        let mine = ours.enum_type.iter().find(|o| o.name() == e.name()).cloned().unwrap();
        assert_eq!(&mine.value[..e.value.len()], e.value.as_slice(), "enum {} changed", e.name());
        for extra in &mine.value[e.value.len()..] {
            assert!(e.value.iter().all(|v| v.number() != extra.number()), "{} reuses a value", e.name());
        }
    }
    let (seed_svc, our_svc) = (&seed.service[0], &ours.service[0]);
    assert_eq!(seed_svc.name(), our_svc.name());
    assert_eq!(&our_svc.method[..seed_svc.method.len()], seed_svc.method.as_slice(), "seed RPCs changed");
    let added: Vec<&str> = our_svc.method[seed_svc.method.len()..].iter().map(|m| m.name()).collect();
    assert_eq!(added, ["Kill", "Wait", "CloseStdin", "Pause", "Resume", "ListPids", "Update", "Stats", "Checkpoint"]);
}

#[test]
fn lifecycle_extension_messages() {
    golden(PauseRequest {}, &[]);
    golden(ResumeRequest {}, &[]);
    golden(ListPidsRequest {}, &[]);
    // processes (1) { pid (1) = 42, shim_pid (2) = 42 }, { pid = 300 }
    golden(
        ListPidsResponse {
            processes: vec![ProcessInfo { pid: 42, shim_pid: 42 }, ProcessInfo { pid: 300, shim_pid: 0 }],
        },
        &[0x0a, 0x04, 0x08, 0x2a, 0x10, 0x2a, 0x0a, 0x03, 0x08, 0xac, 0x02],
    );
    golden(UpdateRequest { resources: b"{}".to_vec() }, &[0x0a, 0x02, b'{', b'}']);
    golden(StatsRequest {}, &[]);
    golden(CheckpointRequest { image_path: "/i".into(), exit: true }, &[0x0a, 0x02, b'/', b'i', 0x10, 0x01]);
    // CreateRequest.checkpoint is field 9.
    golden(CreateRequest { checkpoint: "/c".into(), ..Default::default() }, &[0x4a, 0x02, b'/', b'c']);
    // runtime_root is field 10 (key 10 << 3 | 2 = 0x52), systemd_cgroup 11 (0x58).
    golden(
        CreateRequest { runtime_root: "/r".into(), systemd_cgroup: true, ..Default::default() },
        &[0x52, 0x02, b'/', b'r', 0x58, 0x01],
    );
    // cgroup_version (1) = 2, pids (4) { current (1) = 3 }
    golden(
        StatsResponse { cgroup_version: 2, pids: Some(PidsStats { current: 3, limit: 0 }), ..Default::default() },
        &[0x08, 0x02, 0x22, 0x02, 0x08, 0x03],
    );
    golden(Process { pid: 1, state: State::Paused.into() }, &[0x08, 0x01, 0x10, 0x02]);
    golden(Event::new("c", EventType::ContainerPaused, 1, 0), &[0x0a, 0x01, b'c', 0x10, 0x05, 0x18, 0x01]);
}

#[test]
fn resumable_event_fields() {
    // Event.seq is field 5, a varint; EventsRequest.since is field 1, and
    // being `optional` it is sent even when 0.
    let ev = Event { seq: 300, ..Event::new("c1", EventType::Oom, 7, 0) };
    golden(ev, &[0x0a, 0x02, b'c', b'1', 0x10, 0x01, 0x18, 0x07, 0x28, 0xac, 0x02]);
    golden(EventsRequest { since: Some(0) }, &[0x08, 0x00]);
    golden(EventsRequest { since: None }, &[]);
}
