//! Who may change the files that decide what customers are sent.
//!
//! The service reloads `recall.toml`, `rules/` and `templates/` when they
//! change, so whoever can write them writes to the clinic's customers. The
//! loaders refuse a file or folder its group or other users can write
//! ([`others_can_write`], with the `chmod` that fixes it), and what recall
//! creates gets its mode set here, whatever the umask: folders 0755 (data
//! 0700), files 0644 (0600 where customers' data or secrets are).

use std::io;
use std::path::Path;

use crate::base::diag::Diagnostic;
use crate::base::i18n::t;

/// Mode of the folders `recall init` creates for the clinic's files.
pub const FOLDER: u32 = 0o755;
/// Mode of the clinic's own files: recall.toml, rules, templates.
pub const FILE: u32 = 0o644;
/// Mode of the folder of the database and the outbox copy.
pub const PRIVATE_FOLDER: u32 = 0o700;
/// Mode of files holding customers' data or secrets: the database, its
/// lock files, the outbox copy, backups.
pub const PRIVATE_FILE: u32 = 0o600;

/// An error when the group or other users may write `path` (a file or a
/// folder, which they could add files to or replace files in), naming its
/// mode and the `chmod` that fixes it. `None` when only its owner can, or
/// it cannot be read (the loader says so itself).
pub fn others_can_write(path: &Path) -> Option<Diagnostic> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o022 == 0 {
            return None;
        }
        let shown = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        Some(
            Diagnostic::error(
                path,
                None,
                t!(
                    "perm.writable",
                    path = shown.display(),
                    mode = format!("{:04o}", mode & 0o7777)
                ),
            )
            .hint(t!("perm.writable_hint", path = shown.display())),
        )
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Like [`others_can_write`] for the folder `recall.toml` is in, which a
/// sticky bit (as on /tmp) protects: others can add files there but not
/// replace recall.toml.
pub fn others_can_replace(folder: &Path) -> Option<Diagnostic> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let folder = if folder.as_os_str().is_empty() {
            Path::new(".")
        } else {
            folder
        };
        let mode = std::fs::metadata(folder).ok()?.permissions().mode();
        if mode & 0o1000 != 0 {
            return None;
        }
        others_can_write(folder)
    }
    #[cfg(not(unix))]
    {
        let _ = folder;
        None
    }
}

/// Creates `path` and any missing parents with `mode` (never more than the
/// umask allows, never group- or world-writable if `mode` is not).
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    #[cfg(not(unix))]
    let _ = mode;
    builder.create(path)
}

/// Writes a new file (failing if it exists) with `mode`.
pub fn write_new(path: &Path, contents: &str, mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options.open(path)?.write_all(contents.as_bytes())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn group_or_world_writable_files_and_folders_are_refused_with_the_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rule.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        assert!(others_can_write(&file).is_none());
        chmod(&file, 0o664);
        let refused = others_can_write(&file).unwrap();
        let hint = refused.hints[0].render(crate::base::i18n::Lang::En);
        assert_eq!(hint, format!("run `chmod go-w {}`", file.display()));
        chmod(&file, 0o646);
        assert!(others_can_write(&file).is_some());
        chmod(dir.path(), 0o777);
        assert!(others_can_write(dir.path()).is_some());
        chmod(dir.path(), 0o1777);
        assert!(others_can_replace(dir.path()).is_none(), "sticky");
        assert!(others_can_write(dir.path()).is_some());
        chmod(dir.path(), 0o700);
    }

    #[test]
    fn created_files_and_folders_take_their_mode_not_more() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a/b");
        create_dir(&folder, PRIVATE_FOLDER).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&folder) & 0o077, 0);
        let file = folder.join("f");
        write_new(&file, "x", FILE).unwrap();
        assert_eq!(mode(&file) & 0o022, 0);
        assert!(write_new(&file, "y", FILE).is_err(), "never overwrites");
    }
}
