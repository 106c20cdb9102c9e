//! The `recall` binary: parses the command line and hands over to the library.
//! Everything it does lives in `recall::cli`, so tests drive the same code.

// mimalloc: a tick allocates customer records on its reader thread and frees
// them on the evaluating threads; glibc's allocator spends a tenth of a big
// tick's CPU on those cross-thread frees (measured with `perf` on `recall bench`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    recall::cli::main()
}
