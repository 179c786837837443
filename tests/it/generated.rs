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

/// The keys the config parser accepts in a table, as its "unknown field" error lists them.
fn accepted_keys(table_header: &str) -> Vec<String> {
    let text = format!("{table_header}\nno_such_key = 1\n");
    let err = match mailferry::config::Config::parse(&text, Path::new("c.toml"), 0o600) {
        Ok(_) => panic!("an unknown key was accepted"),
        Err(e) => e.to_string(),
    };
    let expected = err
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no key list in: {err}"));
    expected
        .split(", ")
        .map(|k| {
            k.split('`')
                .nth(1)
                .unwrap_or_else(|| panic!("{err}"))
                .to_string()
        })
        .collect()
}

#[test]
fn every_config_key_is_documented_in_the_man_page_and_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let man = std::fs::read_to_string(root.join("man/mailferry.toml.5")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for (table, header) in [
        ("top level", ""),
        (
            "accounts",
            "[accounts.a]\nprotocol = \"pop3\"\nhost = \"h\"\nuser = \"u\"",
        ),
        ("channels", "[channels.c]\naccount = \"a\""),
    ] {
        let keys = accepted_keys(header);
        assert!(keys.len() >= 2, "{table}: {keys:?}");
        for key in keys {
            let entry = format!("\n.TP\n.B {key}\n");
            assert!(
                man.contains(&entry),
                "mailferry.toml(5) lacks {table} key {key}"
            );
            if !["accounts", "channels"].contains(&key.as_str()) {
                assert!(
                    readme.contains(&format!("`{key}")),
                    "README lacks {table} key {key}"
                );
            }
        }
    }
}
