//! The `cpu` backend: collectives over a TCP ring between ranks. Rank r sends to r + 1 and
//! receives from r - 1 (mod world). All-reduce is the bandwidth-optimal ring: a reduce-scatter
//! (world - 1 steps, each rank ends owning one fully reduced segment) then an all-gather (world - 1
//! steps), so each rank sends and receives 2 (world - 1) / world of the buffer whatever the world
//! size. In each step a helper thread streams the whole outgoing segment while the calling thread
//! receives the incoming one in chunks and reduces each as it lands, so both directions stay busy
//! during the reduction; the all-gather receives in place, with no extra copy. Every socket
//! operation has the collective timeout; an error names the peer.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::Range;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{ProcessGroup, ReduceOp};
use crate::error::{Error, Result};
use crate::rendezvous::StoreClient;

/// Largest piece sent in one go (per direction).
const CHUNK_BYTES: usize = 4 << 20;

/// A peer connection and how to name it in errors.
struct Peer {
    stream: TcpStream,
    name: String,
}

pub struct RingGroup {
    rank: u32,
    world: u32,
    /// To rank + 1.
    next: Peer,
    /// From rank - 1.
    prev: Peer,
}

impl RingGroup {
    /// Joins the training ring: see [`RingGroup::connect_named`].
    pub fn connect(
        store: &mut StoreClient,
        rank: u32,
        world: u32,
        bind_host: &str,
        advertise_host: &str,
        timeout: Duration,
    ) -> Result<Self> {
        Self::connect_named(store, "train", rank, world, (bind_host, advertise_host), timeout)
    }

    /// Joins the ring called `name` (a job may run several side by side, e.g. one for training
    /// and one for background evaluation, each with its own sockets): listens on `bind_host`,
    /// publishes `advertise_host:port` in the store, connects to the next rank and accepts the
    /// previous one.
    pub fn connect_named(
        store: &mut StoreClient,
        name: &str,
        rank: u32,
        world: u32,
        (bind_host, advertise_host): (&str, &str),
        timeout: Duration,
    ) -> Result<Self> {
        let fail = |what: &str, e: std::io::Error| Error::Collective(format!("rank {rank}: {what}: {e}"));
        let listener = TcpListener::bind((bind_host, 0)).map_err(|e| fail("cannot open the ring port", e))?;
        let port = listener.local_addr().map_err(|e| fail("ring port", e))?.port();
        store.set(&format!("ring/{name}/addr/{rank}"), format!("{advertise_host}:{port}").as_bytes())?;
        let next_rank = (rank + 1) % world;
        let prev_rank = (rank + world - 1) % world;
        let next_addr = store.get(
            &format!("ring/{name}/addr/{next_rank}"),
            timeout,
            &format!("the ring address of rank {next_rank}"),
        )?;
        let next_addr = String::from_utf8_lossy(&next_addr).into_owned();
        let mut next = TcpStream::connect(&next_addr)
            .map_err(|e| fail(&format!("connecting to rank {next_rank} at {next_addr}"), e))?;
        next.write_all(&rank.to_le_bytes()).map_err(|e| fail("ring hello", e))?;
        let prev = accept_from(&listener, prev_rank, rank, timeout)?;
        let next =
            Peer { stream: configure(next, timeout)?, name: format!("rank {next_rank} ({next_addr})") };
        let prev_addr = prev.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        let prev =
            Peer { stream: configure(prev, timeout)?, name: format!("rank {prev_rank} ({prev_addr})") };
        Ok(RingGroup { rank, world, next, prev })
    }

    /// Shuts both connections down from any thread: collectives in progress or to come fail.
    pub fn abort_handle(&self) -> Option<Box<dyn FnOnce() + Send>> {
        let (next, prev) = (self.next.stream.try_clone().ok()?, self.prev.stream.try_clone().ok()?);
        Some(Box::new(move || {
            let _ = next.shutdown(std::net::Shutdown::Both);
            let _ = prev.shutdown(std::net::Shutdown::Both);
        }))
    }

    /// Sets the time any collective may wait for a peer.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<()> {
        for peer in [&self.next, &self.prev] {
            let set =
                peer.stream.set_read_timeout(Some(timeout)).and(peer.stream.set_write_timeout(Some(timeout)));
            set.map_err(|e| Error::Collective(format!("setting the timeout towards {}: {e}", peer.name)))?;
        }
        Ok(())
    }

    /// One ring step: a helper thread streams `data[send]` to the next rank while this thread
    /// receives `recv.len()` elements from the previous one straight into `data[recv]`, chunk by
    /// chunk, combining each chunk with what is there when `reduce` is given (through `incoming`,
    /// at least one chunk long). Both directions stay busy while chunks are reduced, so the
    /// reduction overlaps the transfers instead of alternating with them.
    fn step<T: Element>(
        &mut self,
        data: &mut [T],
        (send, recv): (Range<usize>, Range<usize>),
        reduce: Option<(ReduceOp, &mut [T])>,
        op: &str,
    ) -> Result<()> {
        let (next, prev) = (&mut self.next, &mut self.prev);
        let (send, recv) = disjoint(data, send, recv);
        let send_bytes: &[u8] = bytemuck::cast_slice(send);
        let rank = self.rank;
        std::thread::scope(|scope| {
            let sender =
                scope.spawn(move || next.stream.write_all(send_bytes).map_err(|e| (next.name.clone(), e)));
            let received = receive_into(&mut prev.stream, recv, reduce).map_err(|e| (prev.name.clone(), e));
            let sent = sender.join().expect("the ring sender thread does not panic");
            sent.and(received)
        })
        .map_err(|(peer, e)| peer_error(rank, op, &peer, e))
    }

    fn all_reduce<T: Element>(&mut self, data: &mut [T], op: ReduceOp) -> Result<()> {
        let world = self.world as usize;
        if world == 1 {
            return Ok(());
        }
        let (rank, len) = (self.rank as usize, data.len());
        let mut incoming = vec![T::zeroed(); T::CHUNK.min(segment(len, world, 0).len() + 1)];
        // Reduce-scatter: after step s, segment (rank - s - 1) holds s + 2 ranks' contributions.
        for step in 0..world - 1 {
            let send = segment(len, world, (rank + world - step) % world);
            let recv = segment(len, world, (rank + world - step - 1) % world);
            self.step(data, (send, recv), Some((op, &mut incoming)), "all_reduce")?;
        }
        let owned = segment(len, world, (rank + 1) % world);
        if op == ReduceOp::Avg {
            let scale = T::from_count(world);
            data[owned].iter_mut().for_each(|x| *x = T::divide(*x, scale));
        }
        // All-gather: pass the reduced segments around the ring.
        for step in 0..world - 1 {
            let send = segment(len, world, (rank + 1 + world - step) % world);
            let recv = segment(len, world, (rank + world - step) % world);
            self.step(data, (send, recv), None, "all_reduce")?;
        }
        Ok(())
    }

    fn broadcast<T: Element>(&mut self, data: &mut [T], src: u32) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        let last = (src + self.world - 1) % self.world; // the rank that does not forward
        let rank = self.rank;
        for chunk in chunks(0..data.len(), T::CHUNK) {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut data[chunk]);
            if rank != src {
                self.prev
                    .stream
                    .read_exact(bytes)
                    .map_err(|e| peer_error(rank, "broadcast", &self.prev.name, e))?;
            }
            if rank != last {
                self.next
                    .stream
                    .write_all(bytes)
                    .map_err(|e| peer_error(rank, "broadcast", &self.next.name, e))?;
            }
        }
        Ok(())
    }

    fn all_gather<T: Element>(&mut self, input: &[T], output: &mut [T]) -> Result<()> {
        let (world, rank, n) = (self.world as usize, self.rank as usize, input.len());
        if output.len() != n * world {
            return Err(Error::Collective(format!(
                "all_gather: output holds {} elements, expected {n} x {world}",
                output.len()
            )));
        }
        output[rank * n..(rank + 1) * n].copy_from_slice(input);
        for step in 0..world.saturating_sub(1) {
            let send = (rank + world - step) % world;
            let recv = (rank + world - step - 1) % world;
            self.step(output, (send * n..(send + 1) * n, recv * n..(recv + 1) * n), None, "all_gather")?;
        }
        Ok(())
    }
}

impl ProcessGroup for RingGroup {
    fn rank(&self) -> u32 {
        self.rank
    }
    fn world_size(&self) -> u32 {
        self.world
    }
    fn all_reduce_f32(&mut self, data: &mut [f32], op: ReduceOp) -> Result<()> {
        self.all_reduce(data, op)
    }
    fn all_reduce_f64(&mut self, data: &mut [f64], op: ReduceOp) -> Result<()> {
        self.all_reduce(data, op)
    }
    fn broadcast_f32(&mut self, data: &mut [f32], src: u32) -> Result<()> {
        self.broadcast(data, src)
    }
    fn broadcast_f64(&mut self, data: &mut [f64], src: u32) -> Result<()> {
        self.broadcast(data, src)
    }
    fn all_gather_f32(&mut self, input: &[f32], output: &mut [f32]) -> Result<()> {
        self.all_gather(input, output)
    }
    fn all_gather_f64(&mut self, input: &[f64], output: &mut [f64]) -> Result<()> {
        self.all_gather(input, output)
    }
    fn barrier(&mut self) -> Result<()> {
        self.all_reduce(&mut [0.0f32], ReduceOp::Sum)
    }
    fn abort_handle(&self) -> Option<Box<dyn FnOnce() + Send>> {
        RingGroup::abort_handle(self)
    }
}

/// The element types collectives move: f32 and f64.
pub trait Element: Pod + Send + Sync + PartialOrd {
    /// Elements per chunk.
    const CHUNK: usize = CHUNK_BYTES / std::mem::size_of::<Self>();
    fn reduce(a: Self, b: Self, op: ReduceOp) -> Self;
    fn from_count(n: usize) -> Self;
    fn divide(a: Self, b: Self) -> Self;
}

macro_rules! float_element {
    ($t:ty) => {
        impl Element for $t {
            fn reduce(a: Self, b: Self, op: ReduceOp) -> Self {
                match op {
                    ReduceOp::Sum | ReduceOp::Avg => a + b,
                    ReduceOp::Max => a.max(b),
                }
            }
            fn from_count(n: usize) -> Self {
                n as $t
            }
            fn divide(a: Self, b: Self) -> Self {
                a / b
            }
        }
    };
}
float_element!(f32);
float_element!(f64);

/// Segment `i` of `world` near-equal segments of `len` elements (some empty when len < world).
fn segment(len: usize, world: usize, i: usize) -> Range<usize> {
    (i * len / world)..((i + 1) * len / world)
}

fn chunks(range: Range<usize>, chunk: usize) -> impl Iterator<Item = Range<usize>> {
    let end = range.end;
    range.clone().step_by(chunk.max(1)).map(move |start| start..(start + chunk).min(end))
}

/// `data[a]` to read and `data[b]` to write, for two ranges that do not overlap (an empty range
/// overlaps nothing).
fn disjoint<T>(data: &mut [T], a: Range<usize>, b: Range<usize>) -> (&[T], &mut [T]) {
    if a.is_empty() {
        return (&[], &mut data[b]);
    }
    if b.is_empty() {
        return (&data[a], &mut []);
    }
    assert!(a.end <= b.start || b.end <= a.start, "ring ranges {a:?} and {b:?} overlap");
    if a.end <= b.start {
        let (left, right) = data.split_at_mut(b.start);
        (&left[a], &mut right[..b.len()])
    } else {
        let (left, right) = data.split_at_mut(a.start);
        (&right[..a.len()], &mut left[b])
    }
}

/// Reads `dst.len()` elements from `stream` into `dst`, chunk by chunk; with `reduce`, each
/// chunk lands in the scratch buffer and is combined into `dst` instead.
fn receive_into<T: Element>(
    stream: &mut TcpStream,
    dst: &mut [T],
    reduce: Option<(ReduceOp, &mut [T])>,
) -> std::io::Result<()> {
    match reduce {
        None => stream.read_exact(bytemuck::cast_slice_mut(dst)),
        Some((op, scratch)) => {
            for chunk in dst.chunks_mut(scratch.len().max(1)) {
                let buf = &mut scratch[..chunk.len()];
                stream.read_exact(bytemuck::cast_slice_mut(buf))?;
                for (x, y) in chunk.iter_mut().zip(buf.iter()) {
                    *x = T::reduce(*x, *y, op);
                }
            }
            Ok(())
        }
    }
}

fn configure(stream: TcpStream, timeout: Duration) -> Result<TcpStream> {
    let configure = || -> std::io::Result<TcpStream> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    };
    configure().map_err(|e| Error::Collective(format!("configuring a ring socket: {e}")))
}

/// Accepts the previous rank's connection, checking it says who it is.
fn accept_from(listener: &TcpListener, prev_rank: u32, rank: u32, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    listener.set_nonblocking(true).map_err(|e| Error::Collective(e.to_string()))?;
    loop {
        match listener.accept() {
            Ok((mut stream, addr)) => {
                stream.set_nonblocking(false).map_err(|e| Error::Collective(e.to_string()))?;
                stream.set_read_timeout(Some(timeout)).map_err(|e| Error::Collective(e.to_string()))?;
                let mut hello = [0u8; 4];
                stream
                    .read_exact(&mut hello)
                    .map_err(|e| peer_error(rank, "ring hello", &addr.to_string(), e))?;
                let from = u32::from_le_bytes(hello);
                if from != prev_rank {
                    return Err(Error::Collective(format!(
                        "rank {rank}: expected rank {prev_rank} on the ring, rank {from} connected from {addr}"
                    )));
                }
                return Ok(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                return Err(Error::Collective(format!(
                    "rank {rank}: rank {prev_rank} did not connect within {timeout:.0?}: {e}"
                )))
            }
        }
    }
}

fn peer_error(rank: u32, op: &str, peer: &str, e: std::io::Error) -> Error {
    let (what, hint) = match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ("timed out waiting for".to_string(), "")
        }
        std::io::ErrorKind::UnexpectedEof
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::BrokenPipe => ("lost the connection to".to_string(), " (did it exit?)"),
        _ => (format!("failed ({e}) talking to"), ""),
    };
    Error::Collective(format!("rank {rank}: {op} {what} {peer}{hint}"))
}
