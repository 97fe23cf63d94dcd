//! `shimctl`: a command-line client of the shim.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "shimctl", version, about = "Drive a container shim from the command line")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a throwaway busybox container through the shim, step by step.
    Demo,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo => match shim_examples::demo::run().await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
