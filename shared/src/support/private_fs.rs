//! Files only the server's own user may read: the embedded store holds access_tokens and
//! message texts, and staged media are customers' pictures and voices. Directories are
//! created 0700 and files 0600 whatever the umask; an existing path with looser modes is
//! reported at start (its owner may have meant it; we do not change it behind their back).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) as 0700; warns if it exists with group or other
/// access.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    create_private_dir(dir)?;
    warn_if_shared(dir);
    Ok(())
}

/// Creates `dir` (and missing parents) as 0700, silently (for a staging's directories).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates `path` as an empty 0600 file if it does not exist (before a library opens it
/// with the umask's mode); warns if it exists with group or other access.
pub(crate) fn private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    warn_if_shared(path);
    Ok(())
}

/// Writes `bytes` to a new file `path` readable by its owner alone.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // `mode` applies only when the file is created: an older file is tightened too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

fn warn_if_shared(path: &Path) {
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "readable by other users of this machine: the store holds access_tokens and messages (chmod {} it)",
            if m.is_dir() { "700" } else { "600" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_paths_are_private_whatever_the_umask() {
        let base = std::env::temp_dir().join(format!("wxdesk-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        private_dir(&dir).unwrap();
        let file = dir.join("f");
        private_file(&file).unwrap();
        write_private(&dir.join("g"), b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.join("g")), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&file, b"y").unwrap();
        assert_eq!(mode(&file), 0o600);
        let _ = std::fs::remove_dir_all(&base);
    }
}
