//! The history file's one writer: a thread that takes events from a bounded channel, writes
//! one line each and flushes at least every [`FLUSH_INTERVAL`], so a killed run loses at most
//! that much (and a torn last line, which the parser skips).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use strom_verify::history::{Event, Op};

/// Longest a written line stays in the writer's buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Events waiting for the writer; a full channel makes clients wait (the file is the record,
/// so nothing is dropped), which at this depth means the disk is far behind.
const EVENTS_QUEUED_MAX: usize = 65_536;

enum Message {
    Event(Event),
    /// Flush, sync and stop; events sent afterwards are dropped.
    Close,
}

/// The writer thread and the way to it.
pub(super) struct History {
    sender: SyncSender<Message>,
    thread: thread::JoinHandle<anyhow::Result<u64>>,
}

/// Records events for one client: stamps each with the wall-clock time and the client's name.
#[derive(Clone)]
pub(super) struct Recorder {
    sender: SyncSender<Message>,
    client: String,
}

impl History {
    /// Creates the file (it must not exist: a history is evidence) and starts the writer.
    pub(super) fn create(path: &Path) -> anyhow::Result<History> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("create history file {}", path.display()))?;
        let (sender, receiver) = mpsc::sync_channel(EVENTS_QUEUED_MAX);
        let thread = thread::Builder::new()
            .name("verify-history".to_string())
            .spawn(move || write_events(file, receiver))
            .context("start the history writer")?;
        Ok(History { sender, thread })
    }

    pub(super) fn recorder(&self, client: &str) -> Recorder {
        Recorder {
            sender: self.sender.clone(),
            client: client.to_string(),
        }
    }

    /// Writes what was sent so far, syncs the file and stops the writer; returns the number
    /// of events written.
    pub(super) fn finish(self) -> anyhow::Result<u64> {
        // Clients still alive (abandoned after a deadline) may hold senders: close by message.
        let _ = self.sender.send(Message::Close);
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the history writer panicked"),
        }
    }
}

fn write_events(file: File, receiver: Receiver<Message>) -> anyhow::Result<u64> {
    let mut out = BufWriter::new(file);
    let mut written = 0u64;
    let mut last_flush = Instant::now();
    let mut dirty = false;
    loop {
        let wait = FLUSH_INTERVAL.saturating_sub(last_flush.elapsed());
        let message = match receiver.recv_timeout(wait) {
            Ok(message) => Some(message),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Message::Close),
        };
        match message {
            Some(Message::Event(event)) => {
                out.write_all(event.to_line().as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
                    .context("write the history")?;
                written += 1;
                dirty = true;
            }
            Some(Message::Close) => break,
            None => {}
        }
        if dirty && last_flush.elapsed() >= FLUSH_INTERVAL {
            out.flush().context("flush the history")?;
            dirty = false;
        }
        if !dirty {
            last_flush = Instant::now();
        }
    }
    out.flush().context("flush the history")?;
    out.get_ref().sync_all().context("sync the history")?;
    Ok(written)
}

impl Recorder {
    /// The same writer, another client.
    pub(super) fn named(&self, client: &str) -> Recorder {
        Recorder {
            sender: self.sender.clone(),
            client: client.to_string(),
        }
    }

    pub(super) fn client(&self) -> &str {
        &self.client
    }

    /// Records `op` as happening now.
    pub(super) fn record(&self, op: Op) {
        self.record_at(now_ms(), op);
    }

    /// Records `op` as having happened at `t` (ms since the epoch), for events kept back
    /// until they are known to count (the final read's).
    pub(super) fn record_at(&self, t: f64, op: Op) {
        let event = Event {
            t,
            client: self.client.clone(),
            op,
        };
        // After `finish` nobody listens: the run is over and the event is not part of it.
        let _ = self.sender.send(Message::Event(event));
    }
}

/// Wall-clock milliseconds since the Unix epoch, with fractions.
pub(super) fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_lines_in_order_and_the_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let history = History::create(&path).unwrap();
        let producer = history.recorder("producer-0");
        producer.record(Op::TxnBegin { txn: "a".into() });
        producer.named("txn-1").record_at(5.0, Op::TxnBegin { txn: "b".into() });
        assert_eq!(history.finish().unwrap(), 2);
        // Recording after the end is harmless.
        producer.record(Op::TxnBegin { txn: "c".into() });
        let events = strom_verify::history::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].client, "producer-0");
        assert!(events[0].t > 1.6e12, "wall-clock ms: {}", events[0].t);
        assert_eq!((events[1].client.as_str(), events[1].t), ("txn-1", 5.0));
        assert!(History::create(&path).is_err(), "an existing history is kept");
    }
}
