//! A live reader slower than the drain's grace still gets every byte.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::io::Read;
use std::time::{Duration, Instant};

use shim_core::proto::v1::*;
use shim_core::testing::{collect_events, mkfifo};
use shim_core::{FakeShim, Shim, ShimConfig};

const SIZE: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_taking_ten_seconds_for_8_mib_gets_all_of_it_before_the_exit() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "process": { "args": ["sleep"], "cwd": "/" } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    // A grace much shorter than the time the reader takes for one 64 KiB
    // buffer (about 80 ms here): only partial writes show it is alive.
    let shim = FakeShim::with_config(ShimConfig { io_grace: Duration::from_millis(50), ..Default::default() }, None);
    let req = CreateRequest { id: "slow".into(), bundle: dir.path().display().to_string(), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();

    let fifo = dir.path().join("out");
    mkfifo(&fifo).unwrap();
    let path = fifo.clone();
    // 8 KiB every 10 ms: 8 MiB in about 10 s.
    let reader = std::thread::spawn(move || {
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; 8192];
        let mut total = 0usize;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                return (total, Instant::now());
            }
            total += n;
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let req =
        ExecRequest { args: vec![format!("bytes:{SIZE}")], stdout: fifo.display().to_string(), ..Default::default() };
    let pid = shim.exec(req).await.unwrap().pid;
    let exit =
        collect_events(&mut events, Duration::from_secs(60), |e| e.r#type == EventType::Exit as i32 && e.pid == pid)
            .await
            .unwrap();
    let exit_at = Instant::now();
    assert_eq!(exit.last().map(|e| e.exit_status), Some(0));
    let (total, eof_at) = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert_eq!(total, SIZE, "the reader lost the tail of the output");
    // Everything was written to the FIFO before the EXIT: what the reader
    // still had to read then is at most the pipe's buffer (64 KiB, < 1 s).
    assert!(eof_at.saturating_duration_since(exit_at) < Duration::from_secs(2), "EXIT long before the output");
    assert_eq!(shim.delete(DeleteRequest { pid }).await.unwrap().exit_status, 0);
    assert_eq!(shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);
}
