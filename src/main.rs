use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc malloc: measured in docs/benchmarks.md (request CPU, RSS per
/// WebSocket).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = tenantry::cli::Cli::parse();
    match tenantry::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
