//! The launcher's console: rank lines echoed as they come, and, when stderr is a terminal, a live
//! progress bar driven by rank 0's heartbeat (images seen, rate, time left). Lines are printed
//! above the bar so the two never garble each other.
use std::io::{IsTerminal, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use gan_core::heartbeat;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where echoed rank lines go. Cheap to clone into log threads.
#[derive(Clone)]
pub struct Console {
    bar: Option<ProgressBar>,
}

impl Console {
    /// Lines straight to stderr, no bar.
    pub fn plain() -> Self {
        Console { bar: None }
    }

    /// A console with a bar over `total_nimg` images when `wanted` and stderr is a terminal.
    pub fn with_progress(wanted: bool, total_nimg: u64) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_nimg), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {human_pos}/{human_len} imgs  {elapsed} elapsed, eta {eta}  {msg}",
                )
                .expect("a valid template"),
            );
            bar
        });
        Console { bar }
    }

    /// Prints one rank line.
    pub fn line(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            // Not eprintln!, which panics when stderr fails (a terminal that hung up): the
            // thread echoing a rank must go on draining its pipe, or the rank blocks.
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }

    /// Moves the bar to rank 0's latest heartbeat.
    pub fn update(&self, heartbeat_path: &Path) {
        if let (Some(bar), Some(beat)) = (&self.bar, heartbeat::read(heartbeat_path)) {
            bar.set_position(beat.cur_nimg);
            bar.set_message(format!("step {}", beat.step));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The terminal hung up (SIGHUP: the SSH session dropped): every later write to it fails. Points
/// stdout and stderr at /dev/null where they are a terminal (a character device), so the ranks'
/// checkpoint and shutdown go on unseen rather than failing; the run's log files keep every line.
/// Output to files and pipes (nohup, SLURM, Kubernetes) is left alone.
pub fn detach_from_terminal() {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else { return };
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: fstat into a zeroed struct we own, and dup2 over our own standard descriptors.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == libc::S_IFCHR {
                libc::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}
