//! Pushing a finished run's results to a Pushgateway (the one use Prometheus recommends pushing
//! for: the outcome of a batch job). Live per-rank series are scraped, never pushed. Plain
//! HTTP; the group is `job/gan_launch/run/<run>`, replaced on each push (PUT).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::error::{Error, Result};

/// PUTs `body` (text format 0.0.4) to `<url>/metrics/job/gan_launch/run/<run>`.
pub fn push_to_gateway(url: &str, run: &str, body: &str) -> Result<()> {
    let err = |m: String| Error::Env(format!("pushgateway {url}: {m}"));
    let rest = url.strip_prefix("http://").ok_or_else(|| err("only http:// URLs are supported".into()))?;
    let (host_port, base) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let path = format!("{base}/metrics/job/gan_launch/run/{}", encode_segment(run));
    let mut stream = TcpStream::connect(host_port).map_err(|e| err(e.to_string()))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| err(e.to_string()))?;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {host_port}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).map_err(|e| err(e.to_string()))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| err(e.to_string()))?;
    let status = response.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        let first_line = response.lines().next().unwrap_or("no response");
        let detail = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        return Err(err(format!("{first_line}: {detail}")));
    }
    Ok(())
}

/// What a finished (or stopped) run pushes.
#[derive(Clone, Copy, Debug)]
pub struct FinalResults {
    pub step: u64,
    pub cur_nimg: u64,
    pub duration_seconds: f64,
    /// True when training reached total_kimg (false: stopped early by a signal).
    pub completed: bool,
}

impl FinalResults {
    /// The text format 0.0.4 body.
    pub fn render(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut out = String::new();
        for (name, help, value) in [
            ("gan_run_final_step", "Training step the run ended at.", self.step as f64),
            (
                "gan_run_final_images",
                "Real images shown to D when the run ended (cur_nimg).",
                self.cur_nimg as f64,
            ),
            ("gan_run_duration_seconds", "Wall time of this start of the run.", self.duration_seconds),
            (
                "gan_run_completed",
                "1 when training reached total_kimg, 0 when stopped early.",
                f64::from(u8::from(self.completed)),
            ),
            ("gan_run_end_timestamp_seconds", "Unix time the run ended.", now),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"));
        }
        out
    }
}

/// A grouping-key value in a URL path segment (run names are [A-Za-z0-9._-], kept as they are).
fn encode_segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
