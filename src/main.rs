//! The `rendezvous` binary: see `rendezvous --help`.

fn main() -> std::process::ExitCode {
    rendezvous::cli::main()
}
