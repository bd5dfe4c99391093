//! The `lookout` binary: parses the command line and hands over to the library.

/// mimalloc: a proxy allocates and frees small buffers and headers on every request, and glibc's
/// allocator spent about a tenth of the gateway's CPU on them in the benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    lookout_gateway::cli::main()
}
