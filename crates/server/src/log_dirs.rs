//! The broker's log directories (Kafka's `log.dirs`, "JBOD"): where each partition's log
//! lives, where a new one goes (the directory holding the fewest partition logs, as Kafka
//! places them), and moving a log from one directory to another (AlterReplicaLogDirs).
//!
//! A partition's log is the directory `<log dir>/<topic>-<partition>` in exactly one of them.
//! A move renames it into the other directory when both are on one filesystem (atomic), and
//! otherwise copies it to `<topic>-<partition>.moving` there, renames that into place and
//! then deletes the original; a crash mid-copy leaves a `.moving` directory, removed at the
//! next start. A log found in two directories (a crash between the rename and the deletion)
//! stops the start with both paths named, rather than guessing which to keep.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Suffix of a copy in progress.
const MOVING_SUFFIX: &str = ".moving";

pub struct LogDirs {
    dirs: Vec<PathBuf>,
    /// How many partition logs each directory holds, by its index in `dirs`.
    counts: Mutex<Vec<usize>>,
}

/// Whether a directory entry's name is a partition log's: `<topic>-<partition>`.
fn is_partition_log(name: &str) -> bool {
    name.rsplit_once('-').is_some_and(|(topic, index)| {
        !topic.is_empty() && !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit())
    })
}

impl LogDirs {
    /// Scans `dirs` (each created already): counts their partition logs, removes copies a
    /// crash left unfinished, and refuses a log present in two of them.
    pub fn open(dirs: &[PathBuf]) -> Result<LogDirs, String> {
        let mut counts = Vec::with_capacity(dirs.len());
        let mut seen: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
        for dir in dirs {
            let mut count = 0;
            let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for entry in entries {
                let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(partition) = name.strip_suffix(MOVING_SUFFIX).filter(|p| is_partition_log(p)) {
                    tracing::warn!(dir = %entry.path().display(), partition, "removing a log copy a crash left unfinished");
                    fs::remove_dir_all(entry.path()).map_err(|e| format!("{}: {e}", entry.path().display()))?;
                    continue;
                }
                if !is_partition_log(&name) {
                    continue;
                }
                if let Some(other) = seen.insert(name.clone(), entry.path()) {
                    return Err(format!(
                        "partition log {name} is in two log directories ({} and {}); keep one and remove the other",
                        other.display(),
                        entry.path().display()
                    ));
                }
                count += 1;
            }
            counts.push(count);
        }
        Ok(LogDirs {
            dirs: dirs.to_vec(),
            counts: Mutex::new(counts),
        })
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The configured directory `path` names (as given, or absolute), if any.
    pub fn find_dir(&self, path: &Path) -> Option<&Path> {
        let wanted = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        self.dirs
            .iter()
            .find(|d| *d == path || std::path::absolute(d).is_ok_and(|a| a == wanted))
            .map(PathBuf::as_path)
    }

    /// Where the log of `partition` (`<topic>-<index>`) is, or, if no directory has it, where
    /// a new one goes: the directory with the fewest logs (the first of those tied), which is
    /// counted as holding it from now on.
    pub fn place(&self, partition: &str) -> PathBuf {
        if let Some(dir) = self.dirs.iter().find(|d| d.join(partition).is_dir()) {
            return dir.join(partition);
        }
        let mut counts = self.counts.lock().expect("log dir counts lock");
        let (index, _) = counts
            .iter()
            .enumerate()
            .min_by_key(|(i, count)| (**count, *i))
            .expect("at least one log directory");
        counts[index] += 1;
        self.dirs[index].join(partition)
    }

    /// A log at `path` was deleted or moved away.
    pub fn removed(&self, path: &Path) {
        if let Some(index) = self.index_of(path) {
            let mut counts = self.counts.lock().expect("log dir counts lock");
            counts[index] = counts[index].saturating_sub(1);
        }
    }

    /// A log arrived at `path` (moved here).
    fn added(&self, path: &Path) {
        if let Some(index) = self.index_of(path) {
            self.counts.lock().expect("log dir counts lock")[index] += 1;
        }
    }

    fn index_of(&self, log: &Path) -> Option<usize> {
        let parent = log.parent()?;
        self.dirs.iter().position(|d| d == parent)
    }

    /// Moves the (closed) log at `from` into directory `to`: returns its new path. On error the
    /// log is still whole at `from`.
    pub fn move_log(&self, from: &Path, to: &Path) -> io::Result<PathBuf> {
        let name = from
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} is not a log directory", from.display())))?;
        let target = to.join(name);
        if target.exists() {
            return Err(io::Error::other(format!("{} exists already", target.display())));
        }
        match fs::rename(from, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let mut moving = name.to_os_string();
                moving.push(MOVING_SUFFIX);
                let moving = to.join(moving);
                if let Err(e) = copy_log(from, &moving).and_then(|()| fs::rename(&moving, &target)) {
                    let _ = fs::remove_dir_all(&moving);
                    return Err(e);
                }
                sync_dir(to)?;
                fs::remove_dir_all(from)?;
            }
            Err(e) => return Err(e),
        }
        sync_dir(to)?;
        if let Some(parent) = from.parent() {
            sync_dir(parent)?;
        }
        self.removed(from);
        self.added(&target);
        Ok(target)
    }
}

/// Copies a log's files (a flat directory) and fsyncs them.
fn copy_log(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let copied = to.join(entry.file_name());
            fs::copy(entry.path(), &copied)?;
            fs::File::open(&copied)?.sync_all()?;
        }
    }
    sync_dir(to)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = (0..n).map(|i| root.path().join(format!("d{i}"))).collect();
        for dir in &dirs {
            fs::create_dir_all(dir).unwrap();
        }
        (root, dirs)
    }

    #[test]
    fn new_logs_go_to_the_emptiest_directory_and_existing_ones_stay_where_they_are() {
        let (_root, paths) = dirs(2);
        fs::create_dir(paths[0].join("a-0")).unwrap();
        fs::create_dir(paths[0].join("a-1")).unwrap();
        fs::create_dir(paths[0].join("__cluster_metadata")).unwrap();
        let log_dirs = LogDirs::open(&paths).unwrap();
        assert_eq!(log_dirs.place("a-0"), paths[0].join("a-0"));
        // d0 holds two, d1 none: the next two go to d1, then they alternate from d0.
        let placed: Vec<PathBuf> = ["b-0", "b-1", "b-2", "b-3"]
            .iter()
            .map(|p| {
                let path = log_dirs.place(p);
                fs::create_dir(&path).unwrap();
                path.parent().unwrap().to_path_buf()
            })
            .collect();
        assert_eq!(placed, [&paths[1], &paths[1], &paths[0], &paths[1]].map(Clone::clone));
        log_dirs.removed(&paths[1].join("b-0"));
        fs::remove_dir(paths[1].join("b-0")).unwrap();
        assert_eq!(log_dirs.place("c-0"), paths[1].join("c-0"));
    }

    #[test]
    fn a_move_keeps_every_file_and_a_crash_left_copy_is_removed_at_open() {
        let (_root, paths) = dirs(2);
        let log = paths[0].join("t-3");
        fs::create_dir(&log).unwrap();
        fs::write(log.join("00000000000000000000.log"), b"batches").unwrap();
        fs::create_dir(paths[1].join("t-4.moving")).unwrap();
        let log_dirs = LogDirs::open(&paths).unwrap();
        assert!(!paths[1].join("t-4.moving").exists(), "unfinished copy removed");
        let moved = log_dirs.move_log(&log, &paths[1]).unwrap();
        assert_eq!(moved, paths[1].join("t-3"));
        assert!(!log.exists());
        assert_eq!(fs::read(moved.join("00000000000000000000.log")).unwrap(), b"batches");
        assert!(log_dirs.move_log(&moved, &paths[1]).is_err(), "onto itself");
        // Copying (as across filesystems) gives the same files.
        let copy = paths[0].join("copy");
        copy_log(&moved, &copy).unwrap();
        assert_eq!(fs::read(copy.join("00000000000000000000.log")).unwrap(), b"batches");
    }

    /// Across filesystems (the scratch directory's and tmpfs's, where this machine has both)
    /// a move copies, then removes the original.
    #[test]
    fn a_move_across_filesystems_copies_then_removes() {
        use std::os::unix::fs::MetadataExt;
        let (_root, paths) = dirs(1);
        let Ok(shm) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm here: the copying move is not exercised");
            return;
        };
        if fs::metadata(shm.path()).unwrap().dev() == fs::metadata(&paths[0]).unwrap().dev() {
            eprintln!("/dev/shm is on the scratch directory's filesystem: the copying move is not exercised");
            return;
        }
        let all = vec![paths[0].clone(), shm.path().to_path_buf()];
        let log = paths[0].join("t-0");
        fs::create_dir(&log).unwrap();
        fs::write(log.join("00000000000000000000.log"), b"batches").unwrap();
        fs::write(log.join("leader-epoch-checkpoint"), b"epochs").unwrap();
        let log_dirs = LogDirs::open(&all).unwrap();
        let moved = log_dirs.move_log(&log, shm.path()).unwrap();
        assert_eq!(moved, shm.path().join("t-0"));
        assert!(!log.exists(), "original removed");
        assert!(!shm.path().join("t-0.moving").exists(), "no copy left half-named");
        assert_eq!(fs::read(moved.join("00000000000000000000.log")).unwrap(), b"batches");
        assert_eq!(fs::read(moved.join("leader-epoch-checkpoint")).unwrap(), b"epochs");
    }

    #[test]
    fn a_log_in_two_directories_is_refused_with_both_named() {
        let (_root, paths) = dirs(2);
        fs::create_dir(paths[0].join("t-0")).unwrap();
        fs::create_dir(paths[1].join("t-0")).unwrap();
        let err = LogDirs::open(&paths).err().expect("refused");
        assert!(
            err.contains("two log directories") && err.contains("d0") && err.contains("d1"),
            "{err}"
        );
    }
}
