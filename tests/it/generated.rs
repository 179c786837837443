//! man/ and completions/ are generated from the clap definitions; this fails when they are
//! stale. `MAILFERRY_BLESS=1 cargo test --test it generated` rewrites them.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use mailferry::cli::Cli;
use mailferry::exit::Exit;

fn render_all() -> Vec<(PathBuf, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let cmd = Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .unwrap();
    files.push((root.join("man/mailferry.1"), page));
    for sub in cmd.get_subcommands() {
        let name = format!("mailferry-{}", sub.get_name());
        let mut page = Vec::new();
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(sub.clone().name(leaked))
            .render(&mut page)
            .unwrap();
        files.push((root.join(format!("man/{name}.1")), page));
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "mailferry.bash"),
        (clap_complete::Shell::Zsh, "_mailferry"),
        (clap_complete::Shell::Fish, "mailferry.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "mailferry", &mut out);
        files.push((root.join("completions").join(file), out));
    }
    files
}

#[test]
fn man_pages_and_completions_are_current() {
    let bless = std::env::var_os("MAILFERRY_BLESS").is_some();
    let mut stale = Vec::new();
    for (path, content) in render_all() {
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &content).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&content[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale generated files (run MAILFERRY_BLESS=1 cargo test --test it generated): {stale:?}"
    );
}

#[test]
fn every_exit_code_is_documented_in_help_and_readme() {
    let help = Cli::command().render_long_help().to_string();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (code, meaning) in Exit::TABLE {
        let line = format!("{:<3} {meaning}", code.code());
        assert!(help.contains(&line), "--help lacks {line:?}");
        assert!(
            readme.contains(&format!("| {} | {meaning} |", code.code())),
            "README lacks exit code {}",
            code.code()
        );
    }
}
