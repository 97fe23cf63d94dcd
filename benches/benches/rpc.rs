//! Transport cost and event throughput, against the fake shim (no runc, so
//! only the transport is measured).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a bench may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures::StreamExt;
use shim_benches::{fake_server_thread, fake_with_container, over_grpc, over_mem, runtime};
use shim_core::proto::v1::{Event, EventType, EventsRequest, PtyRequest, StateRequest};
use shim_core::Shim;
use shim_transport_grpc::{ClientOptions, GrpcShim};

/// Runs the calling thread on CPU 0 only, or (`false`) on the CPUs the
/// process started with.
fn pin_to_cpu0(pin: bool) {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    static STARTED_WITH: std::sync::OnceLock<CpuSet> = std::sync::OnceLock::new();
    let all = *STARTED_WITH.get_or_init(|| sched_getaffinity(Pid::from_raw(0)).unwrap());
    let set = if pin {
        let mut one = CpuSet::new();
        one.set(0).unwrap();
        one
    } else {
        all
    };
    sched_setaffinity(Pid::from_raw(0), &set).unwrap();
}

/// A client from `rt` of a fake shim served from a thread of its own (see
/// [`fake_server_thread`]), and the fake's init pid. `one_cpu` pins the
/// server's thread to CPU 0.
fn grpc_server_thread(rt: &tokio::runtime::Runtime, dir: std::path::PathBuf, one_cpu: bool) -> (GrpcShim, u32) {
    let (socket, pid) = fake_server_thread(dir, move || {
        if one_cpu {
            pin_to_cpu0(true);
        }
    });
    let client = rt.block_on(GrpcShim::connect(&socket, ClientOptions::default())).unwrap();
    (client, pid)
}

fn rpc(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (fake, pid) = rt.block_on(fake_with_container(dir.path(), 1024));
    let direct: Arc<dyn Shim> = fake.clone();
    let (_mem_server, mem) = rt.block_on(async { over_mem(fake.clone(), false) });
    let (_enc_server, mem_encoded) = rt.block_on(async { over_mem(fake.clone(), true) });
    let grpc_dir = tempfile::tempdir().unwrap();
    let (grpc, grpc_pid) = grpc_server_thread(&rt, grpc_dir.path().to_path_buf(), false);
    let pinned_dir = tempfile::tempdir().unwrap();
    let (grpc_pinned, pinned_pid) = grpc_server_thread(&rt, pinned_dir.path().to_path_buf(), true);
    // The same, with client and server on one thread: the transport's own
    // cost, without the wake-up of another thread.
    let (_same_server, grpc_same) = rt.block_on(over_grpc(fake.clone(), dir.path()));
    let shims: Vec<(&str, Arc<dyn Shim>, u32)> = vec![
        ("direct", direct, pid),
        ("mem", Arc::new(mem), pid),
        ("mem-encoded", Arc::new(mem_encoded), pid),
        ("grpc-unix", Arc::new(grpc), grpc_pid),
        ("grpc-unix-same-thread", Arc::new(grpc_same), pid),
        ("grpc-unix-one-cpu", Arc::new(grpc_pinned), pinned_pid),
    ];
    let mut group = c.benchmark_group("rpc");
    for (name, shim, pid) in &shims {
        let pid = *pid;
        // The one-cpu variant: client and server threads share CPU 0, so
        // the wake-ups between them do not cross CPUs.
        pin_to_cpu0(name.ends_with("one-cpu"));
        group.bench_with_input(BenchmarkId::new("state", name), shim, |b, shim| {
            b.to_async(&rt).iter(|| async { shim.state(StateRequest {}).await.unwrap() })
        });
        group.bench_with_input(BenchmarkId::new("pty", name), shim, |b, shim| {
            b.to_async(&rt).iter(|| async { shim.pty(PtyRequest { pid, width: 80, height: 24 }).await.unwrap() })
        });
    }
    pin_to_cpu0(false);
    group.finish();
}

fn events(c: &mut Criterion) {
    const N: u64 = 20_000;
    // The shipped ring (256 events): the publisher sends half a ring, then
    // waits until every subscriber has it, as a shim's events come between
    // its other work; a subscriber never falls a whole ring behind.
    const CHUNK: u64 = shim_core::events::DEFAULT_EVENT_BUFFER as u64 / 2;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (fake, _) = rt.block_on(fake_with_container(dir.path(), shim_core::events::DEFAULT_EVENT_BUFFER));
    let (_mem_server, mem) = rt.block_on(async { over_mem(fake.clone(), false) });
    let (_grpc_server, grpc) = rt.block_on(over_grpc(fake.clone(), dir.path()));
    let transports: Vec<(&str, Arc<dyn Shim>)> = vec![("mem", Arc::new(mem)), ("grpc-unix", Arc::new(grpc))];
    let mut group = c.benchmark_group("events");
    group.throughput(Throughput::Elements(N));
    group.sample_size(10);
    for (name, shim) in &transports {
        for subscribers in [1usize, 8] {
            group.bench_function(BenchmarkId::new(*name, format!("{subscribers}-subscribers")), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let shim = Arc::clone(shim);
                    let bus = fake.event_bus().clone();
                    async move {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let mut streams = Vec::new();
                            for _ in 0..subscribers {
                                streams.push(shim.events(EventsRequest::default()).await.unwrap());
                            }
                            let (progress, mut progressed) = tokio::sync::mpsc::unbounded_channel();
                            let readers: Vec<_> = streams
                                .into_iter()
                                .map(|mut s| {
                                    let progress = progress.clone();
                                    tokio::spawn(async move {
                                        for n in 1..=N {
                                            s.next().await.unwrap().unwrap();
                                            if n % CHUNK == 0 || n == N {
                                                progress.send(()).unwrap();
                                            }
                                        }
                                    })
                                })
                                .collect();
                            let start = Instant::now();
                            let mut i = 0;
                            while i < N {
                                let end = (i + CHUNK).min(N);
                                for pid in i..end {
                                    bus.publish(Event::new("bench", EventType::Exit, pid as u32, 0));
                                }
                                i = end;
                                for _ in 0..subscribers {
                                    progressed.recv().await.unwrap();
                                }
                            }
                            for r in readers {
                                r.await.unwrap();
                            }
                            total += start.elapsed();
                        }
                        total
                    }
                })
            });
        }
    }
    group.finish();
}

/// The floor under any cross-thread transport on this machine: one byte
/// each way over a unix socket pair, echoed by a thread that blocks in read;
/// once with the threads free to run on any CPU, once with both on CPU 0.
fn pingpong(c: &mut Criterion) {
    pingpong_on(c, "rpc/unix-pingpong", false);
    pingpong_on(c, "rpc/unix-pingpong-one-cpu", true);
}

fn pingpong_on(c: &mut Criterion, name: &str, one_cpu: bool) {
    use std::io::{Read, Write};
    let (mut near, mut far) = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        if one_cpu {
            pin_to_cpu0(true);
        }
        let mut b = [0u8; 1];
        while far.read_exact(&mut b).is_ok() {
            if far.write_all(&b).is_err() {
                return;
            }
        }
    });
    pin_to_cpu0(one_cpu);
    c.bench_function(name, |b| {
        b.iter(|| {
            let mut x = [7u8; 1];
            near.write_all(&x).unwrap();
            near.read_exact(&mut x).unwrap();
        })
    });
    pin_to_cpu0(false);
}

/// What the unix-socket `:authority` adapter costs a request from our own
/// client: one HEADERS frame (the block h2's client sends on every call
/// after the first: indexed fields and a Huffman-coded `:path`) and one
/// DATA frame, fed through the adapter's state machine.
fn authority(c: &mut Criterion) {
    use shim_transport_grpc::authority::Rewriter;
    fn frame(ty: u8, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
        let len = (payload.len() as u32).to_be_bytes();
        out.extend_from_slice(&[len[1], len[2], len[3], ty, flags, 0, 0, 0, 1]);
        out.extend_from_slice(payload);
    }
    // Captured from a tonic client calling State twice.
    let first: &[u8] = &[
        0x83, 0x86, 0x41, 0x86, 0xa0, 0xe4, 0x1d, 0x13, 0x9d, 0x09, 0x04, 0x96, 0x60, 0x87, 0xa9, 0x23, 0x35, 0x45,
        0xb2, 0x45, 0xd1, 0x39, 0xa9, 0x5f, 0xb8, 0x57, 0xdd, 0x39, 0xa9, 0x63, 0x72, 0x46, 0x92, 0xff, 0x40, 0x82,
        0x49, 0x7f, 0x86, 0x4d, 0x83, 0x35, 0x05, 0xb1, 0x1f, 0x5f, 0x8b, 0x1d, 0x75, 0xd0, 0x62, 0x0d, 0x26, 0x3d,
        0x4c, 0x4d, 0x65, 0x64, 0x7a, 0x89, 0x49, 0xea, 0x31, 0x18, 0x02, 0xe1, 0x69, 0x77, 0xff,
    ];
    let steady: &[u8] = &[
        0x83, 0x86, 0xc1, 0x04, 0x96, 0x60, 0x87, 0xa9, 0x23, 0x35, 0x45, 0xb2, 0x45, 0xd1, 0x39, 0xa9, 0x5f, 0xb8,
        0x57, 0xdd, 0x39, 0xa9, 0x63, 0x72, 0x46, 0x92, 0xff, 0xc0, 0xbf, 0xbe,
    ];
    let mut start = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(0x1, 0x4, first, &mut start);
    let mut request = Vec::new();
    frame(0x1, 0x4, steady, &mut request);
    frame(0x0, 0x1, &[0, 0, 0, 0, 0], &mut request);
    let mut rewriter = Rewriter::new();
    let mut out = Vec::new();
    rewriter.feed(&start, &mut out);
    c.bench_function("rpc/authority-adapter-per-request", |b| {
        b.iter(|| {
            out.clear();
            rewriter.feed(&request, &mut out);
            assert_eq!(out.len(), request.len());
        })
    });
    assert_eq!(rewriter.replaced(), 0);
}

criterion_group!(benches, rpc, events, pingpong, authority);
criterion_main!(benches);
