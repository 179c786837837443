//! The top: the command line and the config become jobs ([`resolve`]), the jobs are run
//! ([`run`]), and what they report becomes output and an exit code (errors of every subsystem
//! are classified here, and only here).

mod resolve;
mod run;

use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::exit::{Classify, Exit};
use crate::report::{self, Output};
use resolve::{Knobs, Setup};

/// Walks an error chain and returns the exit code of the first error that knows its class.
pub fn classify(err: &anyhow::Error) -> Exit {
    macro_rules! known {
        ($cause:expr, $($t:ty),+) => {
            $(if let Some(e) = $cause.downcast_ref::<$t>() {
                return e.exit();
            })+
        };
    }
    for cause in err.chain() {
        known!(
            cause,
            crate::store::StoreError,
            crate::config::ConfigError,
            crate::lock::Locked,
            crate::net::NetError,
            crate::pop3::Pop3Error,
            crate::imap::ImapError,
            crate::state::StateError,
            crate::maildir::MaildirError,
            crate::sync::Refused,
            crate::migrate::Mismatch,
            crate::failpoint::Crash,
            crate::signals::Interrupted
        );
        // A bare I/O error that reaches the top is local: network errors arrive wrapped in
        // `NetError`, which comes first in the chain.
        if cause.is::<std::io::Error>() {
            return Exit::LocalIo;
        }
    }
    Exit::Software
}

/// Runs a parsed command line and returns the exit code; errors are printed to stderr.
pub fn run(cli: Cli) -> Exit {
    let out = Output::new(cli.quiet, cli.json, cli.verbose);
    if let Some(path) = &cli.log_file
        && let Err(code) = open_log(path)
    {
        return code;
    }
    report::set_trace(cli.verbose >= 2 && !cli.quiet);
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "mailferry",
            &mut std::io::stdout(),
        );
        return Exit::Ok;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report::error(
                None,
                &anyhow::Error::new(e).context("cannot start the async runtime"),
            );
            return Exit::Software;
        }
    };
    let setup = match Setup::new(&cli) {
        Ok(setup) => setup,
        Err(e) => {
            let e = anyhow::Error::new(e);
            report::error(None, &e);
            return classify(&e);
        }
    };
    if cli.log_file.is_none()
        && let Some(path) = setup.config.as_ref().and_then(|c| c.log_file.as_ref())
        && let Err(code) = open_log(path)
    {
        return code;
    }
    let jobs = setup.resolve(&cli.command, Knobs::from_env());
    // Fetches run side by side, at most `--jobs` at once; everything else one at a time.
    let at_once = match cli.command {
        Command::Fetch(_) => setup.jobs,
        _ => 1,
    };
    let done = runtime.block_on(async {
        if let Err(e) = crate::signals::listen() {
            out.warn(&format!("cannot take over SIGINT and SIGTERM: {e}"));
        }
        run_all(&setup, jobs, at_once, &out).await
    });
    // Summaries and errors come in the order the jobs were named; a signal is said once.
    let mut worst = Exit::Ok;
    let mut stopped = Vec::new();
    for (name, result) in done {
        let exit = match &result {
            Ok(done) => done.exit(),
            Err(e) => classify(e),
        };
        worst = worst.max(exit);
        if out.json {
            json_line(cli.command.name(), &name, exit, &result);
        }
        match result {
            Err(e) if e.is::<crate::signals::Interrupted>() => stopped.push(name),
            Ok(done) => {
                if !out.json {
                    done.report(&out);
                }
                for problem in done.problems() {
                    report::problem(&name, &problem);
                }
            }
            Err(e) => report::error(
                Some(&name).filter(|a| !a.is_empty()).map(|a| a.as_str()),
                &e,
            ),
        }
    }
    if let Some(signal) = crate::signals::caught().filter(|_| !stopped.is_empty()) {
        report::interrupted(&signal, &stopped);
    }
    worst
}

/// Prints a job's `--json` object: the same keys for every kind of job and outcome (see
/// `doc/report.schema.json`), with the summary's own fields beside them.
fn json_line(kind: &str, name: &str, exit: Exit, result: &anyhow::Result<run::Done>) {
    let (fields, error, failed) = match result {
        Ok(done) => match done.fields() {
            Some(fields) => (fields, done.problems().first().cloned(), done.failures()),
            None if exit == Exit::Ok => return,
            None => (serde_json::json!({}), None, done.failures()),
        },
        Err(e) => (serde_json::json!({}), Some(format!("{e:#}")), &[][..]),
    };
    report::json(kind, name, exit, error, failed, fields);
}

/// Runs every job, at most `at_once` at a time; returns their results in order.
async fn run_all(
    setup: &Setup,
    jobs: Vec<resolve::Resolved>,
    at_once: usize,
    out: &Output,
) -> Vec<(String, anyhow::Result<run::Done>)> {
    let indexed: Vec<(usize, resolve::Resolved)> = jobs.into_iter().enumerate().collect();
    let done = crate::join::work_queue(
        (),
        indexed,
        at_once,
        async || Ok(()),
        async |_: &mut (), (i, (name, job)): (usize, resolve::Resolved)| {
            let result = match job {
                Ok(job) => crate::signals::interruptible(setup.run(job, out)).await,
                Err(e) => Err(e),
            };
            Ok((i, name, result))
        },
        async |_| Ok(()),
    )
    .await;
    let mut done = match done {
        Ok(d) => d,
        Err(e) => return vec![(String::new(), Err(e))],
    };
    done.sort_by_key(|(i, _, _)| *i);
    done.into_iter().map(|(_, name, r)| (name, r)).collect()
}

/// Opens the log file, or says why it cannot (exit code 74).
fn open_log(path: &Path) -> Result<(), Exit> {
    report::log_to(path).map_err(|e| {
        let e =
            anyhow::Error::new(e).context(format!("cannot open the log file {}", path.display()));
        report::error(None, &e);
        Exit::LocalIo
    })
}
