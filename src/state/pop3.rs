//! The POP3 mailbox's records: each message fetched, by its identity (UIDL or header hash),
//! with its local name, first-fetch time and deletion on the server.

use rusqlite::params;

use super::{Deliveries, Delivery, Pop3Known, Result, State, Steps};

/// The POP3 ledger of an account.
pub struct Pop3Ledger<'s> {
    state: &'s mut State,
    /// Recorded as the first-fetch time of what is recorded now.
    now: i64,
}

impl State {
    /// The POP3 mailbox's ledger; `now` is the first-fetch time of messages recorded in it.
    pub fn pop3(&mut self, now: i64) -> Pop3Ledger<'_> {
        Pop3Ledger { state: self, now }
    }

    /// Every POP3 message state knows (fetched, or fetched and deleted): its id and when it was
    /// first fetched, all a plan needs (a no-op run holds one per message on the server).
    pub fn pop3_known(&self) -> Result<Pop3Known> {
        self.rows(
            "SELECT id, first_seen FROM pop3_messages ORDER BY id",
            [],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
        )
    }
}

impl Pop3Ledger<'_> {
    /// Marks POP3 messages as deleted on the server (after the server confirmed it).
    pub fn mark_deleted(&mut self, ids: &[String]) -> Result<()> {
        let now = self.now;
        self.state.write(|tx| {
            let mut stmt =
                tx.prepare_cached("UPDATE pop3_messages SET deleted = ?2 WHERE id = ?1")?;
            for id in ids {
                stmt.execute(params![id, now])?;
            }
            Ok(())
        })
    }
}

impl Deliveries for Pop3Ledger<'_> {
    const STEPS: Steps = Steps {
        tmp: "pop3-after-tmp",
        record: "pop3-after-record",
        rename: "pop3-after-rename",
    };

    /// Records messages (by identity; those without one are not recorded, delete mode removes
    /// them right after) in one transaction with the confirmation of all earlier ones.
    fn record(&mut self, batch: &[Delivery]) -> Result<()> {
        let now = self.now;
        self.state.write(|tx| {
            tx.execute(
                "UPDATE pop3_messages SET delivered = 1 WHERE delivered = 0",
                [],
            )?;
            let mut stmt = tx.prepare_cached(
                "INSERT INTO pop3_messages (id, local_name, size, first_seen, delivered) VALUES (?1, ?2, ?3, ?4, 0)
                 ON CONFLICT(id) DO UPDATE SET local_name = excluded.local_name, size = excluded.size,
                    delivered = 0, deleted = NULL",
            )?;
            for d in batch {
                if let (Some(id), Some(local)) = (&d.key, &d.local) {
                    stmt.execute(params![id, local, d.size as i64, now])?;
                }
            }
            Ok(())
        })
    }

    fn settle(&mut self) -> Result<()> {
        self.state.write(|tx| {
            tx.execute(
                "UPDATE pop3_messages SET delivered = 1 WHERE delivered = 0",
                [],
            )
            .map(|_| ())
        })
    }

    fn has_pending(&self) -> Result<bool> {
        self.state.exists(
            "SELECT EXISTS (SELECT 1 FROM pop3_messages WHERE delivered = 0)",
            [],
        )
    }

    fn recover(&mut self, present: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
        self.state
            .recover_pending("pop3_messages", "delivered = 0", &[], present)
    }
}
