//! Each rank's stderr, captured by the launcher: written to the rank's log file in the run
//! directory, echoed to the console for the ranks the config shows there, and its last lines kept
//! so a failure report can show what the rank said before it died.
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::ChildStderr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;

use crate::console::Console;

/// Lines kept per rank for failure reports.
const TAIL_LINES: usize = 20;

/// The capture of one rank's stderr.
pub struct RankLog {
    tail: Arc<Mutex<VecDeque<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl RankLog {
    /// Starts copying `stderr` to `path` (appended: a restarted rank continues its file) and,
    /// when `echo` is given, to the console.
    pub fn capture(stderr: ChildStderr, path: &Path, echo: Option<Console>) -> anyhow::Result<Self> {
        let file = open_log(path)?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let thread_tail = Arc::clone(&tail);
        let thread = std::thread::Builder::new()
            .name("rank-log".into())
            .spawn(move || copy_lines(stderr, file, echo, &thread_tail))
            .context("starting a log thread")?;
        Ok(RankLog { tail, thread: Some(thread) })
    }

    /// The last lines the rank wrote.
    pub fn tail(&self) -> Vec<String> {
        self.tail.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    /// Waits until the rank's stderr is closed and everything is written.
    pub fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn copy_lines(stderr: ChildStderr, mut file: File, echo: Option<Console>, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(file, "{line}");
        if let Some(console) = &echo {
            console.line(&line);
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    let _ = file.flush();
}
