//! Launchers of a multi-node job agreeing through the store on node 0: all nodes present with the
//! same number of ranks, settings, dataset and (shared) run directory before any rank starts, a
//! failure or a stop signal on one node reaching every node, restarts taken together, and node 0
//! keeping the store up until every node is done.
mod same_job;

use std::time::Duration;

use gan_core::rendezvous::StoreClient;
use gan_core::{Error, Result};

/// What another node said during an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteEvent {
    Failed(String),
    Signal(i32),
}

pub struct NodeGroup {
    store: StoreClient,
    pub node_rank: u32,
    pub nodes: u32,
    timeout: Duration,
}

/// A join that timed out, with `detail` and the key that bounds it: a node that is not there in
/// time is usually late rather than gone.
fn late(e: Error, detail: String, join_timeout: Duration) -> Error {
    match e {
        Error::Rendezvous(message) => Error::Rendezvous(format!(
            "{message}{detail} (dist.join_timeout_secs is {}; raise it when nodes start further apart)",
            join_timeout.as_secs()
        )),
        other => other,
    }
}

impl NodeGroup {
    /// Connects to the store and waits until every node's launcher has joined with `gpus` ranks,
    /// for up to `join_timeout`; later waits between nodes (restarts, the end) take `timeout`.
    pub fn join(
        address: &str,
        token: &str,
        run_id: &str,
        node_rank: u32,
        nodes: u32,
        gpus: u32,
        (join_timeout, timeout): (Duration, Duration),
    ) -> Result<Self> {
        let me = format!("launcher node {node_rank}");
        let mut store =
            StoreClient::connect(address, token, &format!("{run_id}/launchers"), &me, join_timeout)
                .map_err(|e| late(e, String::new(), join_timeout))?;
        store.set(&format!("node/{node_rank}/gpus"), gpus.to_string().as_bytes())?;
        if let Err(e) = store.barrier("nodes-up", nodes, join_timeout) {
            let missing: Vec<String> = (0..nodes)
                .filter(|r| !matches!(store.try_get(&format!("node/{r}/gpus")), Ok(Some(_))))
                .map(|r| r.to_string())
                .collect();
            return Err(late(e, format!("; missing node(s): {}", missing.join(", ")), join_timeout));
        }
        for other in 0..nodes {
            let what = format!("node {other}'s rank count");
            let theirs = store.get(&format!("node/{other}/gpus"), join_timeout, &what)?;
            let theirs = String::from_utf8_lossy(&theirs).into_owned();
            if theirs != gpus.to_string() {
                return Err(Error::Env(format!(
                    "node {other} runs {theirs} rank(s) but node {node_rank} runs {gpus}: --gpus must be the same on every node"
                )));
            }
        }
        Ok(NodeGroup { store, node_rank, nodes, timeout })
    }

    /// Tells the other nodes this node's ranks failed in `attempt`.
    pub fn report_failure(&mut self, attempt: u32, message: &str) -> Result<()> {
        let text = format!("node {}: {message}", self.node_rank);
        self.store.compare_set(&format!("attempt/{attempt}/failed"), b"", text.as_bytes()).map(|_| ())
    }

    /// Tells the other nodes to pass `signal` to their ranks.
    pub fn report_signal(&mut self, attempt: u32, signal: i32) -> Result<()> {
        self.store
            .compare_set(&format!("attempt/{attempt}/signal"), b"", signal.to_string().as_bytes())
            .map(|_| ())
    }

    /// What other nodes reported in `attempt`, if anything. Losing the store (node 0 gone) is a
    /// failure too.
    pub fn poll(&mut self, attempt: u32) -> Option<RemoteEvent> {
        let failed = self.store.try_get(&format!("attempt/{attempt}/failed"));
        match failed {
            Ok(Some(text)) => return Some(RemoteEvent::Failed(String::from_utf8_lossy(&text).into_owned())),
            Err(e) => return Some(RemoteEvent::Failed(format!("lost the rendezvous store on node 0: {e}"))),
            Ok(None) => {}
        }
        match self.store.try_get(&format!("attempt/{attempt}/signal")) {
            Ok(Some(text)) => String::from_utf8_lossy(&text).parse().ok().map(RemoteEvent::Signal),
            _ => None,
        }
    }

    /// Waits until every node reached the end of `attempt` (`stage` is "end" or "restart").
    pub fn agree(&mut self, attempt: u32, stage: &str) -> Result<()> {
        self.store.barrier(&format!("attempt/{attempt}/{stage}"), self.nodes, self.timeout)
    }

    /// The job finished: every node agrees, and node 0, whose process hosts the store, waits until
    /// the others have left it, so none of them loses the store in the middle of a call.
    pub fn finish(&mut self, attempt: u32) -> Result<()> {
        self.agree(attempt, "end")?;
        let left = format!("attempt/{attempt}/left");
        if self.node_rank != 0 {
            return self.store.add(&left, 1).map(|_| ());
        }
        let deadline = std::time::Instant::now() + self.timeout;
        while self.store.add(&left, 0)? < i64::from(self.nodes - 1) {
            if std::time::Instant::now() > deadline {
                return Err(Error::Rendezvous(format!(
                    "not every node left the store within {:.0?}",
                    self.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}
