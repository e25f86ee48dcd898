//! Replays fuzzing corpora against a real broker.
//!
//! If `fuzz/corpus/<target>/` exists at the workspace root (or under `$FUZZ_CORPUS_DIR`),
//! every file in it (up to
//! [`FILES_MAX`] per run, in name order) is sent as one request frame body on its own
//! connection. Whatever the broker does with it (answer, error, close), it must stay up and
//! keep serving: a fresh connection must get an ApiVersions answer after every file, so a
//! crash names the file that caused it. Without a corpus the test has nothing to replay and
//! says so.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use strom_testkit::{Broker, WireClient};

/// Bound on files replayed in one run, so the test stays well under a minute.
const FILES_MAX: usize = 5000;
/// Bound on the whole replay; what is left is skipped with a note.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(90);
/// Per file: how long the broker has to answer or close before we move on.
const FILE_TIMEOUT: Duration = Duration::from_millis(200);

/// Overrides the corpus root (default: `fuzz/corpus` at the workspace root).
const CORPUS_DIR_VAR: &str = "FUZZ_CORPUS_DIR";

fn corpus_files() -> Vec<PathBuf> {
    let root = std::env::var_os(CORPUS_DIR_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus"));
    let Ok(targets) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for target in targets.flatten() {
        if let Ok(entries) = std::fs::read_dir(target.path()) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    files
}

#[test]
fn broker_survives_the_fuzz_corpus() {
    let files = corpus_files();
    if files.is_empty() {
        eprintln!("no fuzz/corpus/<target>/ files: nothing to replay");
        return;
    }
    let mut broker = Broker::builder(strom_testkit::bin!())
        .set("socket.request.max.bytes", "1048576")
        .set("auto.create.topics.enable", "false")
        .start();
    let started = Instant::now();
    let mut replayed: usize = 0;
    for path in files.iter().take(FILES_MAX) {
        if started.elapsed() > REPLAY_TIMEOUT {
            eprintln!("replay budget spent after {replayed} of {} files", files.len());
            break;
        }
        let body = std::fs::read(path).expect("read corpus file");
        let mut wire = match WireClient::connect(broker.addr()) {
            Ok(wire) => wire,
            Err(e) => panic!("cannot connect before {}: {e}\n{}", path.display(), broker.log_tail()),
        };
        // The frame may be longer than the cap (then the broker closes), or odd in any way.
        if body.len() < i32::MAX as usize && wire.send_body(&body).is_ok() {
            // Answer, close or silence are all acceptable; a crash is not.
            let _ = wire.closed_within(FILE_TIMEOUT);
        }
        drop(wire);
        replayed += 1;
        // Alive means answering a fresh ApiVersions, so a crash is pinned on this file.
        let alive = WireClient::connect(broker.addr())
            .map_err(anyhow::Error::from)
            .and_then(|mut probe| probe.api_versions());
        if let Err(e) = alive {
            panic!(
                "broker went down on corpus file {} ({e:#})\n{}",
                path.display(),
                broker.log_tail()
            );
        }
    }
    broker.assert_healthy();
    eprintln!("replayed {replayed} corpus files");
}
