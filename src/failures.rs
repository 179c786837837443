//! Failures of one folder or one message that leave the rest of a run going: each is kept in
//! the run's outcome, said after its summary, and a run that had any ends with its own exit
//! code (2), so that cron can tell "partly done" from "nothing done". A message that failed is
//! not recorded as fetched, so the next run asks for it again (and reports it again).

use serde::Serialize;

use crate::deliver::Received;
use crate::maildir::MaildirError;
use crate::store::{Scope, Skipped, StoreError};

/// A folder, or one message of it, that failed while the rest of the run went on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// The folder, as the server names it.
    pub folder: String,
    /// The message's IMAP UID, when one message failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The message's POP3 identity (UIDL), when one message failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// What went wrong, in the server's words where it refused.
    pub error: String,
}

impl Failure {
    /// A whole folder's failure.
    pub fn folder(folder: &str, error: String) -> Failure {
        Failure {
            folder: folder.to_string(),
            uid: None,
            id: None,
            error,
        }
    }

    /// Whether it is one message's.
    pub fn is_message(&self) -> bool {
        self.uid.is_some() || self.id.is_some()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let folder = crate::text::sanitize(&self.folder, 100);
        match (self.uid, &self.id) {
            (Some(uid), _) => write!(f, "{folder} UID {uid}: {}", self.error),
            (None, Some(id)) => {
                let id = crate::text::sanitize(id, 100);
                write!(f, "message {id}: {}", self.error)
            }
            // A folder's error names the folder already.
            (None, None) => write!(f, "{}", self.error),
        }
    }
}

impl From<Skipped> for Failure {
    fn from(skipped: Skipped) -> Failure {
        Failure::folder(&skipped.folder.clone(), skipped.to_string())
    }
}

/// Takes one folder's result: an error that concerns only that folder (the server refused
/// something of it) becomes the folder's failure and the run goes on; any other error (the
/// link, the login, the local disk) stops the run as before.
pub fn of_folder<T>(folder: &str, result: anyhow::Result<T>) -> anyhow::Result<Result<T, Failure>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(e) if of_one_folder(&e) => Ok(Err(Failure::folder(folder, format!("{e:#}")))),
        Err(e) => Err(e),
    }
}

/// The failures of messages of `folder` that were asked for and did not land although the
/// store still has them (`present`), each with the store's words; `id` names a message by
/// its lasting key where the store has one (POP3), else by UID.
pub fn of_messages(
    folder: &str,
    present: &[u32],
    received: &Received,
    id: impl Fn(u32) -> Option<String>,
) -> Vec<Failure> {
    present
        .iter()
        .map(|&uid| {
            let id = id(uid);
            Failure {
                folder: folder.to_string(),
                uid: id.is_none().then_some(uid),
                id,
                error: received.why(uid),
            }
        })
        .collect()
}

/// "N folder(s) failed, M message(s) could not be fetched", for a summary line.
pub fn counted(failed: &[Failure]) -> String {
    let messages = failed.iter().filter(|f| f.is_message()).count();
    let folders = failed.len() - messages;
    let mut parts = Vec::new();
    match folders {
        0 => {}
        1 => parts.push("1 folder failed".to_string()),
        n => parts.push(format!("{n} folders failed")),
    }
    match messages {
        0 => {}
        1 => parts.push("1 message could not be fetched".to_string()),
        n => parts.push(format!("{n} messages could not be fetched")),
    }
    parts.join(", ")
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
