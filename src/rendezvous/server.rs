//! The store server, hosted by the node-0 launcher. One thread per connection (a job has tens to
//! hundreds of ranks, each with one connection); all state behind one mutex with a condition
//! variable that wakes waiting `get`s when any key is set.
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::protocol::{read_frame, write_frame, Request, Response, PROTOCOL_VERSION};
use crate::error::{Error, Result};

/// Longest a stopping server waits for replies still being written.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    values: HashMap<String, Vec<u8>>,
    /// Open connections, so shutdown can unblock their reader threads.
    connections: Vec<TcpStream>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    shutdown: AtomicBool,
    /// Requests read but not yet answered; shutdown lets them finish so no client loses a reply.
    in_flight: AtomicUsize,
    token: String,
}

/// A running store; dropping it stops the server.
pub struct StoreServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl StoreServer {
    /// Binds `addr` (port 0 picks a free port) and serves clients that present `token`. A job's
    /// store on its `--master-port` is bound by the launcher, which knows what a taken port means
    /// for the job, and served with [`StoreServer::serve`].
    pub fn bind(addr: &str, token: &str) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| Error::Rendezvous(format!("cannot listen on {addr}: {e}")))?;
        Self::serve(listener, token)
    }

    /// Serves clients that present `token` on a listener the caller bound (and so could choose
    /// what to do when its first choice of port was taken).
    pub fn serve(listener: TcpListener, token: &str) -> Result<Self> {
        let addr = listener.local_addr().map_err(|e| Error::Rendezvous(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| Error::Rendezvous(e.to_string()))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            shutdown: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            token: token.to_string(),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = std::thread::Builder::new()
            .name("store-accept".into())
            .spawn(move || accept_loop(listener, accept_shared))
            .map_err(|e| Error::Rendezvous(e.to_string()))?;
        Ok(StoreServer { addr, shared, accept_thread: Some(accept_thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        // Wake waiting gets (they answer Timeout), then let in-flight replies go out.
        self.shared.changed.notify_all();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        {
            let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            for stream in &state.connections {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
        self.shared.changed.notify_all();
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_nodelay(true);
                if let Ok(clone) = stream.try_clone() {
                    shared.state.lock().unwrap_or_else(|e| e.into_inner()).connections.push(clone);
                }
                let conn_shared = Arc::clone(&shared);
                let _ = std::thread::Builder::new()
                    .name("store-conn".into())
                    .spawn(move || serve(stream, conn_shared));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Serves one connection until the client hangs up, sends garbage, or the server stops.
fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let Ok(first) = read_frame(&mut stream) else { return };
    let hello = match Request::decode(&first) {
        Ok(Request::Hello { version, token, client }) => (version, token, client),
        _ => return refuse(&mut stream, "the first message must be a hello".into()),
    };
    if hello.0 != PROTOCOL_VERSION {
        return refuse(
            &mut stream,
            format!("protocol version {} (this store speaks {PROTOCOL_VERSION})", hello.0),
        );
    }
    if hello.1 != shared.token {
        tracing::warn!(client = %hello.2, "refused a rendezvous client with a wrong token");
        return refuse(&mut stream, "wrong token for this run".into());
    }
    if write_frame(&mut stream, &Response::Ok.encode()).is_err() {
        return;
    }
    while let Ok(frame) = read_frame(&mut stream) {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let response = match Request::decode(&frame) {
            Ok(request) => apply(&shared, request),
            Err(e) => Response::Refused(format!("malformed request: {e}")),
        };
        let written = write_frame(&mut stream, &response.encode());
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if written.is_err() {
            return;
        }
    }
}

fn refuse(stream: &mut TcpStream, why: String) {
    let _ = write_frame(stream, &Response::Refused(why).encode());
}

fn apply(shared: &Shared, request: Request) -> Response {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    match request {
        Request::Hello { .. } => Response::Refused("hello sent twice".into()),
        Request::Set { key, value } => {
            state.values.insert(key, value);
            shared.changed.notify_all();
            Response::Ok
        }
        Request::Get { key, timeout_ms } => {
            let deadline = Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                if let Some(value) = state.values.get(&key) {
                    return Response::Value(value.clone());
                }
                let now = Instant::now();
                if now >= deadline || shared.shutdown.load(Ordering::SeqCst) {
                    return Response::Timeout;
                }
                state =
                    shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        Request::Add { key, delta } => {
            let current = state.values.get(&key).map_or(Ok(0), |v| parse_counter(v));
            match current {
                Ok(current) => {
                    let new = current.saturating_add(delta);
                    state.values.insert(key, new.to_string().into_bytes());
                    shared.changed.notify_all();
                    Response::Int(new)
                }
                Err(why) => Response::Refused(why),
            }
        }
        Request::CompareSet { key, expected, desired } => {
            let matches = match state.values.get(&key) {
                Some(current) => *current == expected,
                None => expected.is_empty(),
            };
            if matches {
                state.values.insert(key.clone(), desired);
                shared.changed.notify_all();
            }
            Response::Value(state.values.get(&key).cloned().unwrap_or_default())
        }
        Request::Delete { key } => Response::Bool(state.values.remove(&key).is_some()),
    }
}

fn parse_counter(bytes: &[u8]) -> std::result::Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "add on a key that is not a counter".into())
}
