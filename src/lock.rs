//! The run lock: an exclusive lock on a file beside the store, so that two commands never
//! write the store at once.
//!
//! Every command that writes the store takes it first and holds it until it ends. The lock
//! is an advisory `flock` on `<store>.lock`, created readable by its owner only; the kernel
//! releases it when the process ends, however it ends, so a crash or `kill -9` never leaves
//! a stale lock behind. The file itself stays: removing it would let two processes lock two
//! different files of the same name. It holds the process id and start time of the holder,
//! for the message the next run prints.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::debug;

/// Why the lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds it: the caller exits with the lock code.
    #[error(
        "another hubreview run holds the lock `{}`{}; this run did nothing. If no run is \
         in progress, check for a process still running with that store",
        path.display(),
        holder.as_deref().map(|h| format!(" ({h})")).unwrap_or_default()
    )]
    Held {
        path: PathBuf,
        /// `pid N since TIME`, as the holder wrote it, when readable.
        holder: Option<String>,
    },
    /// The lock file is a symbolic link, which is never opened (a write would land in
    /// its target).
    #[error(
        "the lock file `{}` is a symbolic link, and hubreview never writes through one: \
         remove the link (the lock file is created anew) and run again",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error("cannot take the lock `{}`: {cause}; check that its folder is writable", path.display())]
    Io {
        path: PathBuf,
        #[source]
        cause: std::io::Error,
    },
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    /// The store file itself, locked too when it exists, so that a hard link to it (a
    /// path with a lock file of its own) cannot run beside this one. SQLite's own locks
    /// are `fcntl` locks, which `flock` does not touch.
    _store: Option<File>,
}

/// The lock file of the store at `store`: `<store>.lock`.
pub fn lock_path(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// The store's real path, so that two spellings of one store (a symlink, `./`, `..`)
/// share one lock: the store itself with every link resolved when it exists, else its
/// resolved folder and its file name.
fn resolved_store(store: &Path) -> std::io::Result<PathBuf> {
    if let Ok(real) = store.canonicalize() {
        return Ok(real);
    }
    let parent = store
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = store.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "`store.path` names no file",
        )
    })?;
    Ok(parent.canonicalize()?.join(name))
}

impl RunLock {
    /// Takes the lock of the store at `store` without waiting.
    pub fn acquire(store: &Path) -> Result<RunLock, LockError> {
        let given = lock_path(store);
        if let Some(parent) = given.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|cause| LockError::Io {
                path: given.clone(),
                cause,
            })?;
        }
        let path = resolved_store(store)
            .map(|real| lock_path(&real))
            .map_err(|cause| LockError::Io {
                path: given.clone(),
                cause,
            })?;
        let io = |cause| LockError::Io {
            path: path.clone(),
            cause,
        };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Never through a symlink: the holder line would be written into its target.
            options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
        }
        let mut file = match options.open(&path) {
            Ok(file) => file,
            #[cfg(unix)]
            Err(cause) if cause.raw_os_error() == Some(libc::ELOOP) => {
                return Err(LockError::Symlink { path });
            }
            Err(cause) => return Err(io(cause)),
        };
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                // The holder writes its line just after taking the lock: a run that starts
                // at the same moment waits a little for it rather than naming nobody.
                let mut holder = None;
                for _ in 0..20 {
                    let mut text = String::new();
                    holder = file
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut text))
                        .ok()
                        .map(|_| text.trim().to_owned())
                        .filter(|t| !t.is_empty() && t.len() < 200);
                    if holder.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                return Err(LockError::Held { path, holder });
            }
            Err(fs4::TryLockError::Error(cause)) => return Err(io(cause)),
        }

        // Who holds it, for the message of a run that finds it taken. Failing to write this
        // does not matter: the lock is what counts.
        let holder = format!(
            "pid {} since {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        let _ = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(holder.as_bytes()))
            .and_then(|_| file.flush());
        debug!(path = %path.display(), "run lock taken");
        let store_file = match File::open(store) {
            Ok(f) => match fs4::FileExt::try_lock(&f) {
                Ok(()) => Some(f),
                Err(fs4::TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        path: store.to_path_buf(),
                        holder: Some("a run using this store under another name".into()),
                    });
                }
                Err(fs4::TryLockError::Error(cause)) => return Err(io(cause)),
            },
            Err(_) => None,
        };
        Ok(RunLock {
            file,
            path,
            _store: store_file,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_store_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("hubreview.db");
        let first = RunLock::acquire(&store).unwrap();
        let err = RunLock::acquire(&store).unwrap_err();
        match &err {
            LockError::Held { holder, .. } => {
                let holder = holder.as_deref().unwrap_or_default();
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        assert!(err.to_string().contains("hubreview.db.lock"), "{err}");
        drop(first);
        assert!(RunLock::acquire(&store).is_ok());
    }

    #[test]
    fn locks_of_different_stores_do_not_interfere() {
        let dir = tempfile::tempdir().unwrap();
        let _a = RunLock::acquire(&dir.path().join("a.db")).unwrap();
        assert!(RunLock::acquire(&dir.path().join("b.db")).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_lock_file_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let lock = RunLock::acquire(&dir.path().join("s.db")).unwrap();
        let mode = std::fs::metadata(lock.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Regression: a store reached through a symlink took a lock of its own, so two runs
    // wrote one store at once.
    #[cfg(unix)]
    #[test]
    fn two_spellings_of_one_store_share_one_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("hub.db");
        std::fs::write(&store, b"").unwrap();
        let alias = dir.path().join("alias.db");
        std::os::unix::fs::symlink(&store, &alias).unwrap();
        let _held = RunLock::acquire(&store).unwrap();
        assert!(matches!(
            RunLock::acquire(&alias),
            Err(LockError::Held { .. })
        ));
        let dotted = dir.path().join(".").join("hub.db");
        assert!(matches!(
            RunLock::acquire(&dotted),
            Err(LockError::Held { .. })
        ));
    }

    // Regression: a lock file that was a symlink had its target truncated.
    #[cfg(unix)]
    #[test]
    fn a_lock_file_that_is_a_symlink_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("s.db.lock")).unwrap();
        let err = RunLock::acquire(&dir.path().join("s.db")).unwrap_err();
        assert!(matches!(err, LockError::Symlink { .. }), "{err:?}");
        // The message says what is wrong, not that the folder is not writable.
        let text = err.to_string();
        assert!(text.contains("is a symbolic link"), "{text}");
        assert!(!text.contains("writable"), "{text}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    }

    // Regression: a hard link to a store has a path, and so a lock file, of its own.
    #[cfg(unix)]
    #[test]
    fn a_hard_link_to_the_store_shares_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("hub.db");
        std::fs::write(&store, b"").unwrap();
        let link = dir.path().join("hard.db");
        std::fs::hard_link(&store, &link).unwrap();
        let held = RunLock::acquire(&store).unwrap();
        assert!(matches!(
            RunLock::acquire(&link),
            Err(LockError::Held { .. })
        ));
        drop(held);
        assert!(RunLock::acquire(&link).is_ok());
    }
}
