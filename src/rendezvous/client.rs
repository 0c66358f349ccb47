//! The store client every rank (and every launcher) uses. Connecting retries with backoff until a
//! deadline, so ranks may start before the store; every call has a timeout, and a timeout error
//! says who was waiting for what.
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::protocol::{read_frame, write_frame, Request, Response, PROTOCOL_VERSION};
use crate::error::{Error, Result};

/// Extra time a reply may take beyond the wait the server was asked for.
const REPLY_MARGIN: Duration = Duration::from_secs(10);

pub struct StoreClient {
    stream: TcpStream,
    address: String,
    /// Keys are stored as `<run_id>/<key>`, so two runs sharing a store never see each other's keys.
    prefix: String,
    /// Who this client is, for error messages ("rank 3", "launcher node 1").
    client: String,
}

impl StoreClient {
    /// Connects to the store at `address` (host:port), retrying until `connect_timeout`, and
    /// presents the run's token.
    pub fn connect(
        address: &str,
        token: &str,
        run_id: &str,
        client: &str,
        connect_timeout: Duration,
    ) -> Result<Self> {
        let stream = connect_with_backoff(address, connect_timeout)?;
        let _ = stream.set_nodelay(true);
        let mut this = StoreClient {
            stream,
            address: address.into(),
            prefix: format!("{run_id}/"),
            client: client.into(),
        };
        let hello = Request::Hello { version: PROTOCOL_VERSION, token: token.into(), client: client.into() };
        match this.call(&hello, Duration::ZERO)? {
            Response::Ok => Ok(this),
            Response::Refused(why) => {
                Err(Error::Rendezvous(format!("the store at {address} refused {client}: {why}")))
            }
            other => Err(this.unexpected(&other)),
        }
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let request = Request::Set { key: self.scoped(key), value: value.to_vec() };
        match self.call(&request, Duration::ZERO)? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Waits until `key` is set and returns its value. `what` describes the wait for the error
    /// message, e.g. "the ring address of rank 2".
    pub fn get(&mut self, key: &str, timeout: Duration, what: &str) -> Result<Vec<u8>> {
        let request = Request::Get { key: self.scoped(key), timeout_ms: timeout.as_millis() as u64 };
        match self.call(&request, timeout)? {
            Response::Value(v) => Ok(v),
            Response::Timeout => Err(Error::Rendezvous(format!(
                "{} timed out after {:.0?} waiting for {what} (key `{key}` on {})",
                self.client, timeout, self.address
            ))),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The value of `key` if it is set now, without waiting.
    pub fn try_get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.call(&Request::Get { key: self.scoped(key), timeout_ms: 0 }, Duration::ZERO)? {
            Response::Value(v) => Ok(Some(v)),
            Response::Timeout => Ok(None),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Adds `delta` to the counter `key` and returns the new value.
    pub fn add(&mut self, key: &str, delta: i64) -> Result<i64> {
        match self.call(&Request::Add { key: self.scoped(key), delta }, Duration::ZERO)? {
            Response::Int(v) => Ok(v),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sets `key` to `desired` if it holds `expected` (empty = absent); returns the value after.
    pub fn compare_set(&mut self, key: &str, expected: &[u8], desired: &[u8]) -> Result<Vec<u8>> {
        let request = Request::CompareSet {
            key: self.scoped(key),
            expected: expected.to_vec(),
            desired: desired.to_vec(),
        };
        match self.call(&request, Duration::ZERO)? {
            Response::Value(v) => Ok(v),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Removes `key`; true when it existed.
    pub fn delete(&mut self, key: &str) -> Result<bool> {
        match self.call(&Request::Delete { key: self.scoped(key) }, Duration::ZERO)? {
            Response::Bool(b) => Ok(b),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Returns once `world` participants have called `barrier` with this `name`. Each name may
    /// be used once per run; a timeout says how many arrived.
    pub fn barrier(&mut self, name: &str, world: u32, timeout: Duration) -> Result<()> {
        let count_key = format!("barrier/{name}/count");
        let done_key = format!("barrier/{name}/done");
        if self.add(&count_key, 1)? == i64::from(world) {
            self.set(&done_key, b"1")?;
        }
        match self.get(&done_key, timeout, &format!("barrier `{name}`")) {
            Ok(_) => Ok(()),
            Err(_) => {
                let arrived = self.add(&count_key, 0)?;
                Err(Error::Rendezvous(format!(
                    "{} timed out after {timeout:.0?} at barrier `{name}`: {arrived} of {world} arrived",
                    self.client
                )))
            }
        }
    }

    fn scoped(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn call(&mut self, request: &Request, wait: Duration) -> Result<Response> {
        let io_error = |e: io::Error| {
            Error::Rendezvous(format!(
                "{}: connection to the store at {} failed: {e}",
                self.client, self.address
            ))
        };
        self.stream.set_read_timeout(Some(wait + REPLY_MARGIN)).map_err(io_error)?;
        write_frame(&mut self.stream, &request.encode()).map_err(io_error)?;
        let frame = read_frame(&mut self.stream).map_err(io_error)?;
        Response::decode(&frame).map_err(io_error)
    }

    fn unexpected(&self, response: &Response) -> Error {
        Error::Rendezvous(format!(
            "{}: unexpected reply from the store at {}: {response:?}",
            self.client, self.address
        ))
    }
}

fn connect_with_backoff(address: &str, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(20);
    loop {
        let attempt = address.to_socket_addrs().and_then(|mut addrs| {
            let addr = addrs.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            TcpStream::connect_timeout(
                &addr,
                Duration::from_secs(2).min(timeout.max(Duration::from_millis(100))),
            )
        });
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() + delay >= deadline => {
                return Err(Error::Rendezvous(format!(
                "could not reach the rendezvous store at {address} within {timeout:.0?} (last error: {e}); \
                     is the node-0 launcher running and MASTER_ADDR/MASTER_PORT right?"
            )))
            }
            Err(_) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
}
