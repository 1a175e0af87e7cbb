//! Releases: one row per `grove deploy` (and the outcome of each), so `grove releases` can
//! list them and `grove rollback` can find the one before. Which release is live is the
//! `release` setting; the folders themselves are the deploy's business.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{StateError, Store};

/// One release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// `<seq>-<short commit>`: sorts with the sequence and names the code.
    pub id: String,
    /// Increasing number.
    pub seq: i64,
    /// The ref asked for (`origin/main`, a tag, a commit).
    pub git_ref: String,
    /// The commit it resolved to.
    pub commit: String,
    /// When it was made, milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// `building`, `deployed`, `failed`, `rolled back`.
    pub outcome: String,
    /// For a failure, the step and why; otherwise empty.
    pub message: String,
    /// Its folder was removed (`keep`), so it cannot be rolled back to.
    pub pruned: bool,
    /// The stack's folder inside its checkout (where relative `cwd`s point).
    pub dir: String,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS releases(
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    git_ref TEXT NOT NULL,
    git_commit TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    pruned INTEGER NOT NULL DEFAULT 0,
    dir TEXT NOT NULL DEFAULT ''
);
";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Release> {
    Ok(Release {
        id: r.get(0)?,
        seq: r.get(1)?,
        git_ref: r.get(2)?,
        commit: r.get(3)?,
        created_ms: r.get(4)?,
        outcome: r.get(5)?,
        message: r.get(6)?,
        pruned: r.get::<_, i64>(7)? != 0,
        dir: r.get(8)?,
    })
}

const COLUMNS: &str = "id, seq, git_ref, git_commit, created_ms, outcome, message, pruned, dir";

impl Store {
    /// The sequence number the next release gets.
    pub fn next_release_seq(&self) -> Result<i64, StateError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM releases", [], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        Ok(max.unwrap_or(0) + 1)
    }

    /// Records a new release.
    pub fn insert_release(&self, r: &Release) -> Result<(), StateError> {
        self.conn
            .execute(
                &format!("INSERT INTO releases({COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)"),
                params![
                    r.id,
                    r.seq,
                    r.git_ref,
                    r.commit,
                    r.created_ms,
                    r.outcome,
                    r.message,
                    i64::from(r.pruned),
                    r.dir
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Sets a release's outcome (and message).
    pub fn set_release_outcome(
        &self,
        id: &str,
        outcome: &str,
        message: &str,
    ) -> Result<(), StateError> {
        self.conn
            .execute(
                "UPDATE releases SET outcome = ?2, message = ?3 WHERE id = ?1",
                params![id, outcome, message],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Marks a release's folder as removed.
    pub fn set_release_pruned(&self, id: &str) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE releases SET pruned = 1 WHERE id = ?1", params![id])
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Every release, newest first.
    pub fn releases(&self) -> Result<Vec<Release>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM releases ORDER BY seq DESC"))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], row).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// One release by id.
    pub fn release(&self, id: &str) -> Result<Option<Release>, StateError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM releases WHERE id = ?1"),
                params![id],
                row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The live release's id (the `release` setting), if any.
    pub fn live_release(&self) -> Result<Option<String>, StateError> {
        Ok(self.get::<Option<String>>("release")?.flatten())
    }

    /// Makes `id` the live release (`None`: the stack's own folder).
    pub fn set_live_release(&self, id: Option<&str>) -> Result<(), StateError> {
        self.set("release", &id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(seq: i64, outcome: &str) -> Release {
        Release {
            id: format!("{seq}-abc{seq}"),
            seq,
            git_ref: "main".into(),
            commit: format!("abc{seq}0000"),
            created_ms: 1000 * seq,
            outcome: outcome.into(),
            message: String::new(),
            pruned: false,
            dir: format!("/srv/app/.grove/releases/{seq}-abc{seq}"),
        }
    }

    #[test]
    fn releases_are_listed_newest_first_with_their_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(store.next_release_seq().unwrap(), 1);
        assert_eq!(store.live_release().unwrap(), None);
        store.insert_release(&release(1, "deployed")).unwrap();
        store.insert_release(&release(2, "building")).unwrap();
        assert_eq!(store.next_release_seq().unwrap(), 3);
        store
            .set_release_outcome("2-abc2", "failed", "build: `make` exited with code 2")
            .unwrap();
        store.set_release_pruned("1-abc1").unwrap();
        store.set_live_release(Some("1-abc1")).unwrap();
        let all = store.releases().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].id, "2-abc2");
        assert_eq!(all[0].outcome, "failed");
        assert_eq!(all[0].message, "build: `make` exited with code 2");
        assert!(all[1].pruned);
        assert_eq!(store.release("1-abc1").unwrap().unwrap().commit, "abc10000");
        assert_eq!(store.release("9-x").unwrap(), None);
        assert_eq!(store.live_release().unwrap().as_deref(), Some("1-abc1"));
        store.set_live_release(None).unwrap();
        assert_eq!(store.live_release().unwrap(), None);
    }
}
