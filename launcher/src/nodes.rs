//! Launchers of a multi-node job agreeing through the store on node 0: all nodes present with the
//! same number of ranks, settings, dataset and (shared) run directory before any rank starts, a
//! failure or a stop signal on one node reaching every node, restarts taken together, and node 0
//! keeping the store up until every node is done.
use std::path::Path;
use std::time::{Duration, Instant};

use gan_core::config::{self, diff, RunConfig};
use gan_core::data::identity::DatasetIdentity;
use gan_core::rendezvous::StoreClient;
use gan_core::{Error, Result};

/// How long a node looks for node 0's probe file: a shared file system may show a new file to
/// other clients a moment late.
const PROBE_WAIT: Duration = Duration::from_secs(5);

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

    /// Checks that every node runs node 0's job: the same settings (a config edited on one node, or
    /// a `GAN_*` variable set on one, would train its ranks apart from the others'), the same
    /// dataset, and the same run directory through storage every node shares (every rank resumes
    /// from the checkpoints rank 0 writes there; without it, a restart finds them on node 0 only).
    pub fn check_same_job(&mut self, cfg: &RunConfig, run_dir: &Path, max_restarts: u32) -> Result<()> {
        let dataset = DatasetIdentity::of(&cfg.data, cfg.run.seed)?.id;
        let launch = Launch { build: build(), max_restarts };
        if self.node_rank == 0 {
            return self.publish_job(cfg, run_dir, &dataset, &launch);
        }
        let verdict = self.compare_job(cfg, run_dir, &dataset, &launch);
        let report = match &verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        self.store.set(&format!("job/checked/{}", self.node_rank), report.as_bytes())?;
        verdict
    }

    /// Node 0: puts its settings, dataset and a probe file in the run directory where the other
    /// nodes look, then waits for each node's verdict.
    fn publish_job(&mut self, cfg: &RunConfig, run_dir: &Path, dataset: &str, launch: &Launch) -> Result<()> {
        let probe = format!(".node-0-probe-{}", gan_core::rendezvous::new_token());
        std::fs::create_dir_all(run_dir).map_err(Error::io("create", run_dir))?;
        let probe_path = run_dir.join(&probe);
        std::fs::write(&probe_path, probe.as_bytes()).map_err(Error::io("write", &probe_path))?;
        self.store.set("job/build", launch.build.as_bytes())?;
        self.store.set("job/max_restarts", launch.max_restarts.to_string().as_bytes())?;
        self.store.set("job/config", config::to_yaml(cfg).as_bytes())?;
        self.store.set("job/dataset", dataset.as_bytes())?;
        self.store.set("job/probe", probe.as_bytes())?;
        let mut verdict = Ok(());
        for node in 1..self.nodes {
            let what = format!("node {node}'s check of the job");
            let report = self.store.get(&format!("job/checked/{node}"), self.timeout, &what);
            let report = report.map(|r| String::from_utf8_lossy(&r).into_owned());
            match report {
                Ok(ok) if ok == "ok" => {}
                Ok(failed) => {
                    let _ = self.report_failure(0, &failed);
                    verdict = Err(Error::Env(failed));
                    break;
                }
                Err(e) => {
                    verdict = Err(e);
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&probe_path);
        verdict
    }

    /// Another node: compares its settings and dataset with node 0's and looks for the probe file.
    fn compare_job(&mut self, cfg: &RunConfig, run_dir: &Path, dataset: &str, launch: &Launch) -> Result<()> {
        let me = self.node_rank;
        let their_build = self.store.get("job/build", self.timeout, "node 0's build")?;
        same_build(me, &String::from_utf8_lossy(&their_build), &launch.build)?;
        let theirs = self.store.get("job/max_restarts", self.timeout, "node 0's --max-restarts")?;
        let theirs = String::from_utf8_lossy(&theirs).into_owned();
        if theirs != launch.max_restarts.to_string() {
            return Err(Error::Env(format!(
                "node {me} was started with --max-restarts {} but node 0 with {theirs}: every node must \
                 take the same restarts, together",
                launch.max_restarts
            )));
        }
        let theirs = self.store.get("job/config", self.timeout, "node 0's settings")?;
        let theirs =
            config::parse_resolved(&String::from_utf8_lossy(&theirs), Path::new("(node 0's config)"))?;
        // Every key, paths too: the ranks of every node read the one resolved config the
        // launchers write in the shared run directory.
        let changes = diff::changes(&theirs, cfg);
        if !changes.is_empty() {
            return Err(Error::Env(format!(
                "node {me}'s settings differ from node 0's: {} (node 0's value first); every node must \
                 run the same config, flags and GAN_* variables",
                diff::describe(&changes)
            )));
        }
        let their_dataset = self.store.get("job/dataset", self.timeout, "node 0's dataset")?;
        let their_dataset = String::from_utf8_lossy(&their_dataset);
        if their_dataset != dataset {
            return Err(Error::Env(format!(
                "node {me} reads another dataset than node 0 ({dataset} here, {their_dataset} on node 0): \
                 data.path must hold the same prepared dataset on every node"
            )));
        }
        let probe = self.store.get("job/probe", self.timeout, "node 0's probe file")?;
        let probe = String::from_utf8_lossy(&probe).into_owned();
        let deadline = Instant::now() + PROBE_WAIT;
        while std::fs::read_to_string(run_dir.join(&probe)).ok().as_deref() != Some(probe.as_str()) {
            if Instant::now() > deadline {
                return Err(Error::RunDir {
                    path: run_dir.to_path_buf(),
                    message: format!(
                        "node {me} cannot see the file node 0 wrote in it: the run directory must be on \
                         storage every node shares (NFS, Lustre, a ReadWriteMany volume), as every rank \
                         resumes from the checkpoints rank 0 writes there"
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
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

/// What a node's launcher was started as, beside its config.
struct Launch {
    /// [`build`].
    build: String,
    max_restarts: u32,
}

/// This gan-launch's version and commit.
fn build() -> String {
    format!("{} ({})", gan_core::rundir::CRATE_VERSION, gan_core::rundir::GIT_COMMIT)
}

/// Node `me` runs the build node 0 runs: nodes that pulled different images under one tag (or
/// run different checkouts) would train with different code, and their checkpoints would say
/// only rank 0's.
fn same_build(me: u32, theirs: &str, mine: &str) -> Result<()> {
    if theirs == mine {
        return Ok(());
    }
    Err(Error::Env(format!(
        "node {me} runs gan-launch {mine} but node 0 runs {theirs}: every node must run the same build \
         (pin the image by digest rather than by a tag)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_must_run_one_build() {
        assert!(same_build(1, &build(), &build()).is_ok());
        let err = same_build(2, "0.1.0 (abc)", "0.1.0 (def-dirty)").unwrap_err().to_string();
        assert!(
            err.contains("node 2 runs gan-launch 0.1.0 (def-dirty) but node 0 runs 0.1.0 (abc)"),
            "{err}"
        );
    }
}
