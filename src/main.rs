//! The `mailferry` command.

fn main() {
    let exit = mailferry::run(std::env::args_os());
    std::process::exit(exit.code());
}
