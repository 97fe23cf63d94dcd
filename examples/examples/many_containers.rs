//! Many containers in one process, one shim each: see `shim_examples::many`
//! for the guide. Run as root: `cargo run -p shim-examples --example
//! many_containers -- 20`.

use std::process::ExitCode;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let dir = match tempfile::Builder::new().prefix("many-containers-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("many_containers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match shim_examples::many::run(n, dir.path(), "runc").await {
        Ok(summary) => {
            for (id, status) in &summary.statuses {
                let out = summary.outputs.get(id).map(|s| s.trim()).unwrap_or("");
                println!("{id}: exit {status}, said {out:?}");
            }
            println!(
                "{n} containers in {:.0} ms; {} EXIT events on the shared bus; {} entries left in the work directory",
                summary.elapsed.as_secs_f64() * 1000.0,
                summary.exit_events.len(),
                summary.leftovers
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("many_containers: {e}");
            ExitCode::FAILURE
        }
    }
}
