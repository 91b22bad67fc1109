fn main() -> std::process::ExitCode {
    flashline::cli::main()
}
