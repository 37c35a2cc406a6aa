fn main() -> std::process::ExitCode {
    netobs::cli::main()
}
