//! The state folder (`.grove/`): its mode, the store, the admin token. The one place that
//! decides the folder's mode.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use grove_state::Store;
use indexmap::IndexMap;

use crate::DaemonError;

/// The one place that decides the state folder's mode, for the commands that write the stack
/// (`up`, `deploy`, `rollback`). A missing folder is made 0700. An existing one loses group
/// and other read and write, and nothing else: the traverse bit for others (o+x), which the
/// postgres recipe grants so that its user reaches `data/` (issue 27: taking it away makes a
/// running PostgreSQL PANIC at its next checkpoint), is kept, and a folder that is already
/// private is not touched at all.
pub fn make_private_dir(dir: &Path) -> Result<(), DaemonError> {
    let mode = match std::fs::metadata(dir) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(DaemonError::io("cannot create", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(DaemonError::io("cannot restrict", dir))?;
            return Ok(());
        }
        Err(e) => return Err(DaemonError::io("cannot read", dir)(e)),
    };
    let wanted = private_mode(mode);
    if wanted != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted))
            .map_err(DaemonError::io("cannot restrict", dir))?;
    }
    Ok(())
}

/// The mode [`make_private_dir`] gives a state folder that has `mode`: the owner's full
/// access, others' traverse bit if it was set, nothing else.
fn private_mode(mode: u32) -> u32 {
    0o700 | (mode & 0o001)
}

/// Makes the state folder when it is missing; an existing one is left exactly as it is. For
/// the commands that only read or run beside the stack (`events`, `releases`, `exec`,
/// `trust`, `ps`...): none of them may change a mode.
pub fn ensure_state_dir(dir: &Path) -> Result<(), DaemonError> {
    if dir.exists() {
        return Ok(());
    }
    make_private_dir(dir)
}

/// The state store of the folder `state` (made when missing; a new file is 0600).
pub fn open_store(state: &Path) -> Result<Store, DaemonError> {
    ensure_state_dir(state)?;
    let path = state.join("state.db");
    let new = !path.exists();
    let store = Store::open(&path)?;
    if new {
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    }
    Ok(store)
}

/// The state store of the folder `state` for a command that only reads it (`events`,
/// `releases`, `exec`...): `None` when there is none yet; never creates, migrates or changes
/// a mode, and works on a folder this process may not write.
pub fn read_store(state: &Path) -> Result<Option<Store>, DaemonError> {
    let path = state.join("state.db");
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(Store::open_read_only(&path)?))
}

/// The state store for a starting grove, checked first (issue 27): a store SQLite finds
/// damaged is moved aside to `state.db.corrupt-<time>` (with its WAL files) and a fresh one
/// started, so grove never runs without its pid records. The second value says what
/// happened, for the output and the fresh store's first event.
pub fn open_checked_store(state: &Path) -> Result<(Store, Option<String>), DaemonError> {
    let why = match open_store(state) {
        Ok(store) => match store.check() {
            Ok(()) => return Ok((store, None)),
            Err(why) => why.to_string(),
        },
        Err(DaemonError::State(e)) if e.is_corrupt() => e.to_string(),
        Err(e) => return Err(e),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let db = state.join("state.db");
    let aside = state.join(format!("state.db.corrupt-{stamp}"));
    std::fs::rename(&db, &aside).map_err(DaemonError::io("cannot move aside", &db))?;
    for ext in ["-wal", "-shm"] {
        let from = state.join(format!("state.db{ext}"));
        if from.exists() {
            let _ = std::fs::rename(&from, state.join(format!("state.db.corrupt-{stamp}{ext}")));
        }
    }
    let store = open_store(state)?;
    let note = format!(
        "the state store was damaged ({why}); it was moved to {} and a fresh one started          (events, releases and sticky ports before now are in the old file)",
        aside.display()
    );
    Ok((store, Some(note)))
}

/// The units' ports the running stack had (kept across restarts of grove).
pub fn sticky_ports(store: &Store) -> IndexMap<String, u16> {
    store
        .get::<IndexMap<String, u16>>("ports")
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The admin listener's token, made once in `state/admin.token` (0600).
pub(crate) fn admin_token(state: &Path) -> Result<String, DaemonError> {
    let names = vec!["admin.token".to_string()];
    let mut found = grove_state::credentials::load(state, &names, true)
        .map_err(|e| DaemonError::Refused(format!("grove: cannot keep the admin token: {e}")))?;
    found
        .remove("admin.token")
        .ok_or_else(|| DaemonError::Refused("grove: cannot keep the admin token".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_traverse_bit_is_kept_and_reading_bits_go() {
        assert_eq!(private_mode(0o701), 0o701);
        assert_eq!(private_mode(0o755), 0o701);
        assert_eq!(private_mode(0o750), 0o700);
        assert_eq!(private_mode(0o700), 0o700);
    }

    #[test]
    fn a_private_folder_is_left_alone_and_a_new_one_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".grove");
        ensure_state_dir(&state).unwrap();
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o701)).unwrap();
        make_private_dir(&state).unwrap();
        ensure_state_dir(&state).unwrap();
        open_store(&state).unwrap();
        assert_eq!(
            std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
            0o701
        );
    }
}
