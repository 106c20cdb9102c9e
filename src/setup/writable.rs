//! Can the user running recall use its database? `recall check` asks, so
//! that a service user who does not own the clinic's data folder is named,
//! with the `chown` that fixes it, before `recall run` fails on it (and
//! systemd restarts it in a loop).
//!
//! A database or folder that exists and that this user cannot write is an
//! error: `run` as this user would fail. A database that does not exist is
//! a warning (`recall init` makes it), and an error too when this user could
//! not create it. Only asks the system: never opens, creates or changes a
//! file.

use std::path::Path;

use crate::base::diag::Diagnostic;
use crate::base::i18n::t;

/// What stops the current user from using `database` (the `[paths]
/// database` of `config`, whose text is `text`), at that key's line.
pub fn database(config: &Path, text: &str, database: &Path) -> Vec<Diagnostic> {
    let span = crate::config::find_key(text, "paths", "database");
    let folder = match database.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    let user = user_name(current_user());
    let at = |problem: Diagnostic, folder: &Path| {
        let owner = owner(folder).map_or_else(|| "?".to_string(), user_name);
        let folder = folder.display();
        problem.hint(t!("setup.writable_hint", user = &user, folder, owner))
    };
    if database.exists() {
        let file = (!writable(database)).then(|| {
            t!(
                "setup.database_unwritable",
                user = &user,
                path = database.display()
            )
        });
        let journal = (!writable(folder)).then(|| {
            t!(
                "setup.folder_unwritable",
                user = &user,
                path = folder.display()
            )
        });
        return [file, journal]
            .into_iter()
            .flatten()
            .map(|message| at(Diagnostic::error(config, span.clone(), message), folder))
            .collect();
    }
    let mut problems = Vec::new();
    let path = database.display();
    problems.push(
        Diagnostic::warning(
            config,
            span.clone(),
            t!("setup.database_missing", path = &path),
        )
        .hint(t!("setup.database_missing_hint")),
    );
    // `recall init` creates the missing folders under the nearest one that exists.
    if let Some(existing) = folder.ancestors().find(|p| p.exists())
        && !writable(existing)
    {
        let error = Diagnostic::error(
            config,
            span,
            t!(
                "setup.folder_uncreatable",
                user = &user,
                folder = existing.display(),
                path = &path
            ),
        );
        problems.push(at(error, existing));
    }
    problems
}

/// Whether the effective user may write `path` (and, for a folder, create
/// files in it). Read-only file systems, ACLs and root are the system's to
/// judge, not ours.
#[cfg(unix)]
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mode = if path.is_dir() {
        libc::W_OK | libc::X_OK
    } else {
        libc::W_OK
    };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
    unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

#[cfg(not(unix))]
fn writable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
}

#[cfg(unix)]
fn current_user() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn current_user() -> u32 {
    0
}

#[cfg(unix)]
fn owner(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.uid())
}

#[cfg(not(unix))]
fn owner(_: &Path) -> Option<u32> {
    None
}

/// The login name of user `uid`, or the number when it has none.
#[cfg(unix)]
fn user_name(uid: u32) -> String {
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: an all-zero `passwd` is a valid value for getpwuid_r to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found = std::ptr::null_mut();
    // SAFETY: `entry` and `buffer` outlive the call and `buffer.len()` is
    // its size; on success `found` points at `entry`, whose strings live in
    // `buffer`, read before either is dropped.
    unsafe {
        let code = libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        );
        if code == 0 && !found.is_null() && !entry.pw_name.is_null() {
            return std::ffi::CStr::from_ptr(entry.pw_name)
                .to_string_lossy()
                .into_owned();
        }
    }
    uid.to_string()
}

#[cfg(not(unix))]
fn user_name(uid: u32) -> String {
    uid.to_string()
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_is_a_warning_and_an_existing_writable_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("data/recall.db");
        let config = dir.path().join("recall.toml");
        let text = "[paths]\ndatabase = \"data/recall.db\"\n";
        let problems = database(&config, text, &db);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].severity, crate::base::diag::Severity::Warning);
        assert_eq!(
            problems[0].span,
            crate::config::find_key(text, "paths", "database")
        );
        std::fs::create_dir(dir.path().join("data")).unwrap();
        std::fs::write(&db, "").unwrap();
        assert!(database(&config, text, &db).is_empty());
    }

    #[test]
    fn the_current_user_has_a_name() {
        assert!(!user_name(current_user()).is_empty());
    }
}
