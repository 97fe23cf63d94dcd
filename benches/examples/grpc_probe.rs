//! `State` calls over gRPC in a plain loop, for looking at a round trip with
//! strace, perf or gdb (criterion's own work would be in the way there).
//!
//! ```text
//! cargo build --profile bench -p shim-benches --example grpc_probe
//! target/release/examples/grpc_probe [CALLS] [same | SOCKET]
//! ```
//!
//! By default the server (over the fake shim) runs on a thread and runtime of
//! its own, as in the `grpc-unix` bench; `same` puts it on the client's
//! thread; a socket path calls a running daemon instead. Prints the mean time
//! per call; `MARK start` on stderr marks where the measured calls begin.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // a probe may panic

use std::time::Instant;

use shim_benches::{fake_server_thread, fake_with_container, over_grpc, runtime};
use shim_core::proto::v1::StateRequest;
use shim_core::Shim;
use shim_transport_grpc::{ClientOptions, GrpcShim};

fn main() {
    let calls: usize = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let target = std::env::args().nth(2);
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let (_server, client) = match target.as_deref() {
            Some("same") => {
                let (fake, _) = fake_with_container(dir.path(), 1024).await;
                let (server, client) = over_grpc(fake, dir.path()).await;
                (Some(server), client)
            }
            Some(socket) => (None, GrpcShim::connect(socket, ClientOptions::default()).await.unwrap()),
            None => {
                let (socket, _) = fake_server_thread(dir.path().to_path_buf(), || {});
                (None, GrpcShim::connect(&socket, ClientOptions::default()).await.unwrap())
            }
        };
        for _ in 0..1000 {
            client.state(StateRequest {}).await.unwrap();
        }
        eprintln!("MARK start");
        let t = Instant::now();
        for _ in 0..calls {
            client.state(StateRequest {}).await.unwrap();
        }
        let per_call = t.elapsed().as_secs_f64() * 1e6 / calls as f64;
        println!("{calls} calls, {per_call:.2} µs per call");
    });
}
