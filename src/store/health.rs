//! How each sender is doing (`sender_health`, migration 10): `ok`,
//! `failing` (its last attempts all failed) or `paused` (the provider
//! refused its credentials or account). The dispatcher decides the states
//! (`dispatch::health`) and writes them here after each round; `recall
//! status` and `/healthz` read them. Errors pass through [`redact`], as on
//! messages.

use rusqlite::{OptionalExtension, params};

use super::{Result, Store};
use crate::base::clock::Timestamp;
use crate::base::redact::redact;

/// A sender's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SenderState {
    #[default]
    Ok,
    /// Its last `[dispatch] failing_after` attempts all failed.
    Failing,
    /// The provider refused its credentials or account: its messages wait,
    /// one probe at a time.
    Paused,
}

impl SenderState {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderState::Ok => "ok",
            SenderState::Failing => "failing",
            SenderState::Paused => "paused",
        }
    }

    fn parse(text: &str) -> SenderState {
        match text {
            "failing" => SenderState::Failing,
            "paused" => SenderState::Paused,
            _ => SenderState::Ok,
        }
    }
}

impl std::fmt::Display for SenderState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sender's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderHealth {
    /// The name under `[senders]`.
    pub sender: String,
    pub state: SenderState,
    /// Attempts that failed in a row (reset by one that went through).
    pub failures: i64,
    /// The provider's code of a pause (`AuthFailure.SignatureFailure`).
    pub code: Option<String>,
    pub last_error: Option<String>,
    /// When the state began.
    pub since: Timestamp,
    pub updated_at: Timestamp,
    /// Paused: when one message may go out to see if the provider takes it.
    pub probe_at: Option<Timestamp>,
    /// Paused: probes that were refused so far (the next waits longer).
    pub probes: i64,
    /// The state staff were last told about by the alert sender.
    pub announced: SenderState,
}

impl SenderHealth {
    /// A sender nothing is known about yet.
    pub fn new(sender: &str, now: Timestamp) -> SenderHealth {
        SenderHealth {
            sender: sender.to_string(),
            state: SenderState::Ok,
            failures: 0,
            code: None,
            last_error: None,
            since: now,
            updated_at: now,
            probe_at: None,
            probes: 0,
            announced: SenderState::Ok,
        }
    }
}

const COLUMNS: &str =
    "sender, state, failures, code, last_error, since, updated_at, probe_at, probes, announced";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SenderHealth> {
    Ok(SenderHealth {
        sender: r.get(0)?,
        state: SenderState::parse(&r.get::<_, String>(1)?),
        failures: r.get(2)?,
        code: r.get(3)?,
        last_error: r.get(4)?,
        since: r.get(5)?,
        updated_at: r.get(6)?,
        probe_at: r.get(7)?,
        probes: r.get(8)?,
        announced: SenderState::parse(&r.get::<_, String>(9)?),
    })
}

impl Store {
    /// Every sender's health, by name.
    pub fn sender_health(&self) -> Result<Vec<SenderHealth>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sender_health ORDER BY sender"
        ))?;
        let rows = stmt.query_map([], row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One sender's health, if anything is recorded.
    pub fn sender_health_of(&self, sender: &str) -> Result<Option<SenderHealth>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM sender_health WHERE sender = ?1"
            ))?
            .query_row([sender], row)
            .optional()?)
    }

    /// Writes what the dispatcher learned of these senders, in one
    /// transaction. `announced` is left as it is: only
    /// [`Store::mark_announced`] writes it.
    pub fn save_sender_health(&mut self, rows: &[SenderHealth]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO sender_health
                    (sender, state, failures, code, last_error, since, updated_at, probe_at, probes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (sender) DO UPDATE SET state = ?2, failures = ?3, code = ?4,
                    last_error = ?5, since = ?6, updated_at = ?7, probe_at = ?8, probes = ?9",
            )?;
            for h in rows {
                upsert.execute(params![
                    h.sender,
                    h.state.as_str(),
                    h.failures,
                    h.code.as_deref().map(redact),
                    h.last_error.as_deref().map(redact),
                    h.since,
                    h.updated_at,
                    h.probe_at,
                    h.probes,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Staff were told that `sender` is now `state`.
    pub fn mark_announced(&self, sender: &str, state: SenderState) -> Result<()> {
        self.conn.execute(
            "UPDATE sender_health SET announced = ?2 WHERE sender = ?1",
            params![sender, state.as_str()],
        )?;
        Ok(())
    }

    /// Lets every paused sender probe at `now` (after a reload: the
    /// credentials or the account may have been fixed). Returns how many.
    pub fn probe_paused_now(&self, now: Timestamp) -> Result<usize> {
        Ok(self.conn.execute(
            "UPDATE sender_health SET probe_at = ?1 WHERE state = 'paused'",
            [now],
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_saved_without_touching_what_was_announced() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::create(&dir.path().join("t.db")).unwrap();
        let mut paused = SenderHealth::new("sms", 100);
        paused.state = SenderState::Paused;
        paused.code = Some("AuthFailure.SignatureFailure".into());
        paused.probe_at = Some(160);
        store.save_sender_health(&[paused.clone()]).unwrap();
        store.mark_announced("sms", SenderState::Paused).unwrap();
        paused.failures = 3;
        store.save_sender_health(&[paused.clone()]).unwrap();
        let read = store.sender_health_of("sms").unwrap().unwrap();
        assert_eq!(read.failures, 3);
        assert_eq!(read.announced, SenderState::Paused);
        assert_eq!(store.probe_paused_now(120).unwrap(), 1);
        assert_eq!(store.sender_health().unwrap()[0].probe_at, Some(120));
    }
}
