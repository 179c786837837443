//! Failures of one folder that leave the rest of a run going: each is kept in the run's
//! outcome, said after its summary, and a run that had any ends with its own exit code (2),
//! so that cron can tell "partly done" from "nothing done".

use serde::Serialize;

use crate::maildir::MaildirError;
use crate::store::{Scope, Skipped, StoreError};

/// A folder that failed while the rest of the run went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FolderFailure {
    /// The folder, as the server names it.
    pub folder: String,
    /// What went wrong, in the server's words where it refused.
    pub error: String,
}

impl From<Skipped> for FolderFailure {
    fn from(skipped: Skipped) -> FolderFailure {
        FolderFailure {
            error: skipped.to_string(),
            folder: skipped.folder,
        }
    }
}

/// Takes one folder's result: an error that concerns only that folder (the server refused
/// something of it) becomes the folder's failure and the run goes on; any other error (the
/// link, the login, the local disk) stops the run as before.
pub fn of_folder<T>(
    folder: &str,
    result: anyhow::Result<T>,
) -> anyhow::Result<Result<T, FolderFailure>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) if of_one_folder(&e) => Ok(Err(FolderFailure {
            folder: folder.to_string(),
            error: format!("{e:#}"),
        })),
        Err(e) => Err(e),
    }
}

/// "N folder(s) failed", for a summary line.
pub fn counted(failed: &[FolderFailure]) -> String {
    match failed.len() {
        1 => "1 folder failed".to_string(),
        n => format!("{n} folders failed"),
    }
}

/// Whether an error stops only the folder it happened in: the server refused something of
/// it, or its name cannot be stored here.
fn of_one_folder(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let refused = c
            .downcast_ref::<StoreError>()
            .is_some_and(|s| matches!(s.scope, Scope::Folder(_) | Scope::Message(_)));
        let unstorable = matches!(c.downcast_ref(), Some(MaildirError::BadName { .. }));
        refused || unstorable
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retry;
    use crate::store::mem::MemError;

    fn refusal(scope: Scope) -> anyhow::Error {
        let refused = MemError("NO [NOPERM] denied".into());
        anyhow::Error::new(StoreError::new(scope, Retry::Never, refused)).context("folder Shared")
    }

    #[test]
    fn a_refusal_of_a_folder_or_message_is_that_folders_failure() {
        for scope in [Scope::Folder("Shared".into()), Scope::Message(7)] {
            let failure = of_folder::<()>("Shared", Err(refusal(scope)))
                .unwrap()
                .unwrap_err();
            assert_eq!(failure.folder, "Shared");
            assert!(failure.error.contains("NOPERM"), "{}", failure.error);
        }
    }

    #[test]
    fn an_error_of_the_account_or_link_stops_the_run_and_a_bad_name_only_its_folder() {
        assert!(of_folder::<()>("Shared", Err(refusal(Scope::Account))).is_err());
        assert!(of_folder::<()>("Shared", Err(anyhow::anyhow!("disk full"))).is_err());
        let unstorable = MaildirError::BadName {
            name: "n".repeat(300),
            why: "it is longer than a file name may be",
        };
        let failure = of_folder::<()>("nnn", Err(unstorable.into())).unwrap();
        assert!(
            failure
                .unwrap_err()
                .error
                .contains("longer than a file name")
        );
        assert_eq!(of_folder("Shared", Ok(3)).unwrap(), Ok(3));
    }
}
