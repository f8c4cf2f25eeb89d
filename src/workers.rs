//! One single-threaded tokio runtime per core: each session lives on one
//! thread from accept to close (no work stealing, no wake-up crossing
//! threads), and each worker accepts from its own `SO_REUSEPORT` listener
//! socket, so the kernel spreads new connections over them.
//!
//! It owns the worker threads and hands out their runtime handles; it never
//! decides what runs on them.

use std::io;
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::watch;

/// The worker threads and their runtimes; stopped (and joined) on drop,
/// after the server that uses them has shut down.
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// `count` worker threads (at least one), each running a
    /// current-thread runtime until [`Workers`] is dropped.
    pub fn start(count: usize) -> io::Result<Workers> {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::new();
        let mut threads = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            let thread = std::thread::Builder::new()
                .name(format!("replyfix-w{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while !*stopped.borrow() {
                            if stopped.changed().await.is_err() {
                                break;
                            }
                        }
                    });
                })?;
            threads.push(thread);
        }
        Ok(Workers {
            handles,
            threads,
            stop,
        })
    }

    /// As many workers as this process may run on at once (its CPU
    /// affinity, e.g. `taskset`, included).
    pub fn for_this_machine() -> io::Result<Workers> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        Workers::start(count)
    }

    /// The workers' runtimes, to spawn onto.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_runs_its_own_thread_until_dropped() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.handles().len(), 2);
        let names: Vec<String> = workers
            .handles()
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
                });
                rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap()
            })
            .collect();
        assert_eq!(names, ["replyfix-w0", "replyfix-w1"]);
        drop(workers);
    }
}
