//! The `acquire-exporter` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    acquire_exporter::main()
}
