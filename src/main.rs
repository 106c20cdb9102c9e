//! The `recall` binary: parses the command line and hands over to the library.
//! Everything it does lives in `recall::cli`, so tests drive the same code.

fn main() -> std::process::ExitCode {
    recall::cli::main()
}
