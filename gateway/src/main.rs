//! The `lookout` binary: parses the command line and hands over to the library.

fn main() -> std::process::ExitCode {
    lookout_gateway::cli::main()
}
