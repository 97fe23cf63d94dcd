//! `shimctl`: a command-line client of the `shim` daemon.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shim_core::proto::v1::*;
use shim_core::Shim;
use shim_examples::ctl;

#[derive(Parser)]
#[command(
    name = "shimctl",
    version = env!("SHIM_VERSION"),
    about = "Drive a container shim from the command line",
    after_help = "Examples:\n  shim --socket /run/shim/web.sock --daemonize\n  shimctl --socket /run/shim/web.sock create --id web --bundle /srv/web\n  shimctl --socket /run/shim/web.sock start\n  shimctl run --bundle /srv/web --tty\n\nEach command's --help shows an example of it."
)]
struct Cli {
    /// The shim's unix socket.
    #[arg(long, global = true)]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the container (prints the init's pid).
    #[command(
        after_help = "Example:\n  shimctl --socket /run/shim/web.sock create --id web --bundle /srv/web --stdout /var/log/web.log"
    )]
    Create {
        /// Container id.
        #[arg(long)]
        id: String,
        /// Bundle directory (holds config.json).
        #[arg(long)]
        bundle: PathBuf,
        /// Give the init a terminal (the bundle's config must ask for one).
        #[arg(long)]
        terminal: bool,
        /// Stdin FIFO or file.
        #[arg(long)]
        stdin: Option<String>,
        /// Stdout FIFO or file.
        #[arg(long)]
        stdout: Option<String>,
        /// Stderr FIFO or file.
        #[arg(long)]
        stderr: Option<String>,
    },
    /// Start the container's init.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock start")]
    Start,
    /// Run another process in the container (prints its pid).
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock exec --env DEBUG=1 -- ps aux")]
    Exec {
        /// Give the process a terminal.
        #[arg(long)]
        terminal: bool,
        /// UID:GID to run as.
        #[arg(long)]
        user: Option<String>,
        /// KEY=VALUE to set (repeatable).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(long)]
        cwd: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Show the container and its processes.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock state")]
    State,
    /// Print events as they arrive, one per line.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock events --json --since 0")]
    Events {
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
        /// First replay the events after this sequence number that the shim still keeps.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Send a signal.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock kill --pid 4242 --signal 9 --all")]
    Kill {
        /// Process id.
        #[arg(long)]
        pid: u32,
        /// Signal number.
        #[arg(long, default_value_t = 15)]
        signal: u32,
        /// Signal every process of the container (init pid only).
        #[arg(long)]
        all: bool,
    },
    /// Wait for a process to exit and print its exit status.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock wait --pid 4242")]
    Wait {
        /// Process id.
        #[arg(long)]
        pid: u32,
    },
    /// Resize a process's terminal.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock pty --pid 4242 --width 120 --height 40")]
    Pty {
        /// Process id.
        #[arg(long)]
        pid: u32,
        /// Columns.
        #[arg(long)]
        width: u32,
        /// Rows.
        #[arg(long)]
        height: u32,
    },
    /// Delete a process (the init: the container) and print its exit status.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock delete --pid 4242")]
    Delete {
        /// Process id.
        #[arg(long)]
        pid: u32,
    },
    /// Freeze every process of the container.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock pause")]
    Pause,
    /// Thaw the paused container.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock resume")]
    Resume,
    /// List every process of the container: one pid a line, then `shim` for
    /// the processes the shim started (Wait, Kill and Delete take those).
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock ps")]
    Ps,
    /// Show the container's resource usage (memory, CPU, pids, block I/O).
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock stats --json")]
    Stats {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint the running container with CRIU into a directory.
    #[command(after_help = "Example:\n  shimctl --socket /run/shim/web.sock checkpoint --image /var/lib/ckpt/web")]
    Checkpoint {
        /// The image directory (created if missing).
        #[arg(long)]
        image: PathBuf,
        /// Stop the container after checkpointing it.
        #[arg(long)]
        exit: bool,
    },
    /// Change the container's resource limits.
    #[command(
        after_help = "Examples:\n  shimctl --socket /run/shim/web.sock update --memory-limit 268435456 --pids-limit 100\n  shimctl --socket /run/shim/web.sock update --resources limits.json   (an OCI LinuxResources object)"
    )]
    Update {
        /// Memory limit in bytes.
        #[arg(long)]
        memory_limit: Option<i64>,
        /// CPU quota in microseconds per period (needs --cpu-period).
        #[arg(long, requires = "cpu_period")]
        cpu_quota: Option<i64>,
        /// CPU period in microseconds.
        #[arg(long)]
        cpu_period: Option<u64>,
        /// Most processes the container may hold.
        #[arg(long)]
        pids_limit: Option<i64>,
        /// A file holding an OCI LinuxResources JSON object; the flags above
        /// are merged into it.
        #[arg(long)]
        resources: Option<PathBuf>,
    },
    /// Start a shim, run a bundle with this terminal's stdio, wait, delete,
    /// and exit with the container's status, like `runc run`.
    #[command(after_help = "Example:\n  shimctl run --bundle /srv/web --tty")]
    Run {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Container id.
        #[arg(long, default_value_t = format!("run-{}", std::process::id()))]
        id: String,
        /// Attach this terminal (raw mode, window size forwarded).
        #[arg(long)]
        tty: bool,
    },
    /// Run a throwaway busybox container through a shim daemon, step by step.
    #[command(after_help = "Example:\n  shimctl demo")]
    Demo,
    /// Write a busybox bundle (from the host's static busybox) into a directory.
    #[command(after_help = r#"Example:
  shimctl bundle --dir /tmp/bundle -- sh -c "echo hello; sleep 100""#)]
    Bundle {
        /// Where to write it (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// Give the init a terminal.
        #[arg(long)]
        tty: bool,
        /// Memory limit in bytes.
        #[arg(long)]
        memory_limit: Option<i64>,
        /// The init's command and arguments.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
}

/// Prints `shimctl stats`: text lines, or one JSON object.
fn print_stats(s: &StatsResponse, json: bool) {
    let m = s.memory.clone().unwrap_or_default();
    let c = s.cpu.clone().unwrap_or_default();
    let p = s.pids.unwrap_or_default();
    let io: Vec<serde_json::Value> = s
        .blkio
        .clone()
        .unwrap_or_default()
        .entries
        .iter()
        .map(|e| serde_json::json!({ "major": e.major, "minor": e.minor, "op": e.op, "value": e.value }))
        .collect();
    let value = serde_json::json!({
        "cgroup_version": s.cgroup_version,
        "memory": { "usage": m.usage, "limit": m.limit, "max_usage": m.max_usage, "cache": m.cache, "rss": m.rss,
                    "anon": m.anon, "file": m.file, "oom_kills": m.oom_kills, "failcnt": m.failcnt },
        "cpu": { "usage_total_ns": c.usage_total_ns, "usage_user_ns": c.usage_user_ns,
                 "usage_system_ns": c.usage_system_ns, "periods": c.periods,
                 "throttled_periods": c.throttled_periods, "throttled_time_ns": c.throttled_time_ns },
        "pids": { "current": p.current, "limit": p.limit },
        "blkio": io,
    });
    if json {
        println!("{value}");
        return;
    }
    println!("cgroup v{}", s.cgroup_version);
    println!(
        "memory usage {} limit {} max_usage {} cache {} rss {} oom_kills {} failcnt {}",
        m.usage, m.limit, m.max_usage, m.cache, m.rss, m.oom_kills, m.failcnt
    );
    println!(
        "cpu total_ns {} user_ns {} system_ns {} periods {} throttled_periods {} throttled_ns {}",
        c.usage_total_ns, c.usage_user_ns, c.usage_system_ns, c.periods, c.throttled_periods, c.throttled_time_ns
    );
    println!("pids current {} limit {}", p.current, p.limit);
    for e in s.blkio.clone().unwrap_or_default().entries {
        println!("blkio {}:{} {} {}", e.major, e.minor, e.op, e.value);
    }
}

/// The LinuxResources JSON of `shimctl update`: the file's object, if any,
/// with the flags merged in.
fn update_json(
    memory_limit: Option<i64>,
    cpu_quota: Option<i64>,
    cpu_period: Option<u64>,
    pids_limit: Option<i64>,
    file: Option<&std::path::Path>,
) -> Result<Vec<u8>, String> {
    let mut resources = match file {
        Some(path) => {
            let text = std::fs::read(path).map_err(|e| format!("--resources {}: {e}", path.display()))?;
            serde_json::from_slice::<serde_json::Value>(&text)
                .map_err(|e| format!("--resources {}: not valid json: {e}", path.display()))?
        }
        None => serde_json::json!({}),
    };
    let Some(object) = resources.as_object_mut() else {
        return Err("--resources: the file must hold a JSON object".into());
    };
    let mut set = |section: &str, key: &str, value: serde_json::Value| {
        let entry = object.entry(section.to_string()).or_insert_with(|| serde_json::json!({}));
        if let Some(obj) = entry.as_object_mut() {
            obj.insert(key.to_string(), value);
        }
    };
    if let Some(v) = memory_limit {
        set("memory", "limit", v.into());
    }
    if let Some(v) = cpu_quota {
        set("cpu", "quota", v.into());
    }
    if let Some(v) = cpu_period {
        set("cpu", "period", v.into());
    }
    if let Some(v) = pids_limit {
        set("pids", "limit", v.into());
    }
    if object.is_empty() {
        return Err(
            "nothing to update: give --memory-limit, --cpu-quota/--cpu-period, --pids-limit or --resources".into()
        );
    }
    serde_json::to_vec(&resources).map_err(|e| e.to_string())
}

fn parse_user(s: &str) -> Result<User, String> {
    let (uid, gid) = s.split_once(':').ok_or_else(|| format!("--user {s:?}: expected UID:GID"))?;
    let num = |v: &str| v.parse::<u32>().map_err(|_| format!("--user {s:?}: {v:?} is not a number"));
    Ok(User { uid: num(uid)?, gid: num(gid)?, additional_gids: vec![] })
}

async fn client(socket: &Option<PathBuf>) -> Result<shim_transport_grpc::GrpcShim, String> {
    let socket = socket.as_ref().ok_or("--socket is required for this command")?;
    ctl::connect(socket).await.map_err(|e| ctl::describe(&e))
}

async fn main_async(cli: Cli) -> Result<u8, String> {
    let err = |e: shim_core::ShimError| ctl::describe(&e);
    match cli.command {
        Command::Run { bundle, id, tty } => {
            let status =
                ctl::run(ctl::RunOptions { bundle, id, tty, socket: cli.socket }).await.map_err(|e| e.to_string())?;
            return Ok(u8::try_from(status).unwrap_or(255));
        }
        Command::Demo => {
            shim_examples::demo::run().await.map_err(|e| format!("demo failed: {e}"))?;
            return Ok(0);
        }
        Command::Bundle { dir, tty, memory_limit, args } => {
            let mut builder = shim_core::testing::BundleBuilder::new().args(args).terminal(tty);
            if let Some(limit) = memory_limit {
                builder = builder.memory_limit(limit);
            }
            builder.build(&dir).map_err(|e| e.to_string())?;
            println!("{}", dir.display());
            return Ok(0);
        }
        _ => {}
    }
    let shim = client(&cli.socket).await?;
    match cli.command {
        Command::Create { id, bundle, terminal, stdin, stdout, stderr } => {
            let bundle = std::fs::canonicalize(&bundle).map_err(|e| format!("bundle {}: {e}", bundle.display()))?;
            let req = CreateRequest {
                id,
                bundle: bundle.to_string_lossy().into_owned(),
                terminal,
                stdin: stdin.unwrap_or_default(),
                stdout: stdout.unwrap_or_default(),
                stderr: stderr.unwrap_or_default(),
                ..Default::default()
            };
            println!("{}", shim.create(req).await.map_err(err)?.pid);
        }
        Command::Start => shim.start(StartRequest {}).await.map_err(err)?,
        Command::Exec { terminal, user, env, cwd, args } => {
            let user = user.as_deref().map(parse_user).transpose()?;
            let req = ExecRequest { terminal, user, env, cwd: cwd.unwrap_or_default(), args, ..Default::default() };
            println!("{}", shim.exec(req).await.map_err(err)?.pid);
        }
        Command::State => {
            let st = shim.state(StateRequest {}).await.map_err(err)?;
            println!("id {}", st.id);
            for p in st.processes {
                let state = p.process_state().map(|s| s.as_str_name()).unwrap_or("UNKNOWN");
                println!("{} {state}", p.pid);
            }
        }
        Command::Events { json, since } => ctl::events(&shim, json, since).await.map_err(err)?,
        Command::Kill { pid, signal, all } => shim.kill(KillRequest { pid, signal, all }).await.map_err(err)?,
        Command::Wait { pid } => println!("{}", shim.wait(WaitRequest { pid }).await.map_err(err)?.exit_status),
        Command::Pty { pid, width, height } => shim.pty(PtyRequest { pid, width, height }).await.map_err(err)?,
        Command::Delete { pid } => println!("{}", shim.delete(DeleteRequest { pid }).await.map_err(err)?.exit_status),
        Command::Pause => shim.pause(PauseRequest {}).await.map_err(err)?,
        Command::Checkpoint { image, exit } => {
            let image = std::path::absolute(&image).map_err(|e| format!("--image {}: {e}", image.display()))?;
            let req = CheckpointRequest { image_path: image.to_string_lossy().into_owned(), exit };
            shim.checkpoint(req).await.map_err(err)?;
        }
        Command::Stats { json } => {
            let s = shim.stats(StatsRequest {}).await.map_err(err)?;
            print_stats(&s, json);
        }
        Command::Resume => shim.resume(ResumeRequest {}).await.map_err(err)?,
        Command::Ps => {
            for p in shim.list_pids(ListPidsRequest {}).await.map_err(err)?.processes {
                if p.shim_pid == 0 {
                    println!("{}", p.pid);
                } else {
                    println!("{} shim", p.pid);
                }
            }
        }
        Command::Update { memory_limit, cpu_quota, cpu_period, pids_limit, resources } => {
            let json = update_json(memory_limit, cpu_quota, cpu_period, pids_limit, resources.as_deref())?;
            shim.update(UpdateRequest { resources: json }).await.map_err(err)?;
        }
        Command::Run { .. } | Command::Demo | Command::Bundle { .. } => {}
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shimctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(main_async(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("shimctl: {message}");
            ExitCode::FAILURE
        }
    };
    // Threads still blocked on our stdin must not keep us alive.
    runtime.shutdown_background();
    code
}
