//! A log writer that batches records: a session appends its record to a
//! shared buffer and goes on; one background thread writes the whole batch
//! with one `write` every [`FLUSH_INTERVAL`], or at once when the batch
//! passes [`FLUSH_BYTES`]. A record costs no system call and wakes no
//! thread (a queue with a waiting reader would wake it for every record).
//!
//! Lossless: when the batch holds [`MAX_BYTES`], writers wait for the flush
//! (an audit record is never dropped). Dropping the [`FlushGuard`] writes
//! what is left.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// The longest a record waits before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// A batch this large is written without waiting for the interval.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Writers wait while the batch is this large (the output is slower than
/// the records).
pub const MAX_BYTES: usize = 8 * 1024 * 1024;

struct State {
    batch: Vec<u8>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The flusher waits here for the interval or a full batch.
    work: Condvar,
    /// Writers wait here while the batch is at [`MAX_BYTES`].
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A writer that panicked mid-append leaves whole bytes behind; the
        // log goes on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The writer handed to `tracing_subscriber` (cheap to clone).
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Keep alive until exit: dropping it writes the last batch and stops the
/// background thread.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the background thread that writes batches to `out`.
pub fn batch_writer<W: Write + Send + 'static>(out: W) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            batch: Vec::new(),
            closed: false,
        }),
        work: Condvar::new(),
        room: Condvar::new(),
    });
    let flusher = shared.clone();
    let thread = std::thread::Builder::new()
        .name("replyfix-log".into())
        .spawn(move || flush_loop(&flusher, out))
        .expect("spawning the log thread");
    (
        BatchWriter {
            shared: shared.clone(),
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    )
}

fn flush_loop<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let closed;
        {
            let mut state = shared.lock();
            if state.batch.len() < FLUSH_BYTES && !state.closed {
                state = shared
                    .work
                    .wait_timeout(state, FLUSH_INTERVAL)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            closed = state.closed;
            std::mem::swap(&mut state.batch, &mut spare);
        }
        shared.room.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failing stderr; the records are gone.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            // A burst must not pin a large buffer for the process's life.
            if spare.capacity() > 4 * FLUSH_BYTES {
                spare = Vec::new();
            }
        }
        if closed && shared.lock().batch.is_empty() {
            return;
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut state = self.shared.lock();
        while state.batch.len() >= MAX_BYTES && !state.closed {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        state.batch.extend_from_slice(buf);
        if state.batch.len() >= FLUSH_BYTES {
            self.shared.work.notify_one();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that records what reached it, and how many writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_record_arrives_whole_and_in_order_per_writer_in_few_writes() {
        let sink = Sink::default();
        let (writer, guard) = batch_writer(sink.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        w.write_all(format!("t{t} record {i:05}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let (out, writes) = &*sink.0.lock().unwrap();
        let text = std::str::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 80_000);
        for t in 0..4 {
            let mine: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|l| l.starts_with(&format!("t{t} ")))
                .collect();
            let want: Vec<String> = (0..20_000).map(|i| format!("t{t} record {i:05}")).collect();
            assert_eq!(mine, want, "thread {t}");
        }
        // Batched: far fewer writes than records.
        assert!(*writes < 80_000 / 10, "{writes} writes for 80,000 records");
    }

    /// An output that takes its time: writers must wait for room, never
    /// drop a record.
    struct Slow(Sink);

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_output_makes_writers_wait_rather_than_lose_records() {
        let sink = Sink::default();
        let (mut writer, guard) = batch_writer(Slow(sink.clone()));
        let record = vec![b'x'; 1023];
        // 24 MiB through an 8 MiB batch.
        for _ in 0..(24 * 1024) {
            writer.write_all(&record).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        drop(guard);
        let (out, _) = &*sink.0.lock().unwrap();
        assert_eq!(out.len(), 24 * 1024 * 1024);
    }

    #[test]
    fn a_lone_record_is_written_within_the_interval() {
        let sink = Sink::default();
        let (mut writer, _guard) = batch_writer(sink.clone());
        writer.write_all(b"one\n").unwrap();
        let mut waited = Duration::ZERO;
        while sink.0.lock().unwrap().0.is_empty() && waited < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
            waited += Duration::from_millis(5);
        }
        assert_eq!(sink.0.lock().unwrap().0, b"one\n");
    }
}
