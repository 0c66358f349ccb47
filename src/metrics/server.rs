//! `/metrics` over HTTP/1.1 from a plain TCP listener on its own thread: Prometheus scrapes a
//! rank every few seconds, so one connection at a time, closed after each answer, is plenty and
//! keeps an HTTP framework out of the trainer.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Error, Result};

/// What the server answers with: the current exposition text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl MetricsServer {
    /// Serves `render()` at `http://bind:port/metrics` (port 0: any free port).
    pub fn start(bind: &str, port: u16, render: Render) -> Result<Self> {
        let address = format!("{bind}:{port}");
        let listener = TcpListener::bind(&address).map_err(|e| {
            Error::Env(format!(
                "metrics endpoint {address}: {e} (set metrics.port, or metrics.enabled: false)"
            ))
        })?;
        let addr =
            listener.local_addr().map_err(|e| Error::Env(format!("metrics endpoint {address}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if thread_stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        let _ = answer(stream, render.as_ref());
                    }
                }
            })
            .map_err(|e| Error::Env(format!("metrics thread: {e}")))?;
        Ok(MetricsServer { addr, stop, thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept call so the thread sees the flag.
        let wake = if self.addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], self.addr.port()))
        } else {
            self.addr
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts an endpoint for `who` (e.g. "rank 3") and records its address in `addr_file`, so
/// tests and scrape configs find endpoints on port 0. A port that cannot be bound is a loud
/// warning and `None`: the job matters more than its dashboard.
pub fn serve_recorded(
    bind: &str,
    port: u16,
    render: Render,
    addr_file: &std::path::Path,
    who: &str,
) -> Option<MetricsServer> {
    match MetricsServer::start(bind, port, render) {
        Ok(server) => {
            let addr = server.local_addr();
            tracing::info!(address = %addr, "serving {who} metrics at http://{addr}/metrics");
            if let Err(e) = crate::fsutil::write_atomic(addr_file, format!("{addr}\n").as_bytes()) {
                tracing::warn!("cannot record the metrics address: {e}");
            }
            Some(server)
        }
        Err(e) => {
            tracing::warn!("no metrics endpoint for {who}: {e}; the job continues without it");
            None
        }
    }
}

fn answer(mut stream: TcpStream, render: &(dyn Fn() -> String + Send + Sync)) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let request = String::from_utf8_lossy(&head);
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, render()),
        ("GET", "/") => ("200 OK", "text/plain", "gan-launch metrics: see /metrics\n".to_string()),
        _ => ("404 Not Found", "text/plain", "not found\n".to_string()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
