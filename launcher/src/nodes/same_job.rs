//! Before any rank starts, every node checks that it runs node 0's job: the same build and
//! `--max-restarts`, the same settings key by key (a config edited on one node, or a `GAN_*`
//! variable set on one, would train its ranks apart from the others'), the same dataset by
//! content, and the same run directory through storage every node shares (every rank resumes from
//! the checkpoints rank 0 writes there; without it, a restart finds them on node 0 only).
use std::path::Path;
use std::time::{Duration, Instant};

use gan_core::config::{self, diff, RunConfig};
use gan_core::data::identity::DatasetIdentity;
use gan_core::{Error, Result};

use super::NodeGroup;

/// How long a node looks for node 0's probe file: a shared file system may show a new file to
/// other clients a moment late.
const PROBE_WAIT: Duration = Duration::from_secs(5);

/// What a node's launcher was started as, beside its config.
struct Launch {
    /// [`build`].
    build: String,
    max_restarts: u32,
}

impl NodeGroup {
    /// Checks this node runs node 0's job (see the module's doc); node 0 hears every node's
    /// verdict, so a failed check stops every node with the reason.
    pub fn check_same_job(&mut self, cfg: &RunConfig, run_dir: &Path, max_restarts: u32) -> Result<()> {
        let dataset = DatasetIdentity::of(&cfg.data, cfg.run.seed)?.id;
        let launch = Launch { build: build(), max_restarts };
        if self.node_rank == 0 {
            return self.publish_job(cfg, run_dir, &dataset, &launch);
        }
        let verdict = self
            .compare_launch(&launch)
            .and_then(|()| self.compare_settings(cfg, &dataset))
            .and_then(|()| self.find_probe(run_dir));
        let report = match &verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        };
        self.store.set(&format!("job/checked/{}", self.node_rank), report.as_bytes())?;
        verdict
    }

    /// Node 0: puts its build, settings, dataset and a probe file in the run directory where the
    /// other nodes look, then waits for each node's verdict.
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
        let verdict = self.hear_verdicts();
        let _ = std::fs::remove_file(&probe_path);
        verdict
    }

    /// Node 0: every other node's verdict; the first failure is passed on to every node.
    fn hear_verdicts(&mut self) -> Result<()> {
        for node in 1..self.nodes {
            let what = format!("node {node}'s check of the job");
            let report = self.store.get(&format!("job/checked/{node}"), self.timeout, &what)?;
            let report = String::from_utf8_lossy(&report).into_owned();
            if report != "ok" {
                let _ = self.report_failure(0, &report);
                return Err(Error::Env(report));
            }
        }
        Ok(())
    }

    /// A text node 0 published.
    fn node0s(&mut self, key: &str, what: &str) -> Result<String> {
        let value = self.store.get(key, self.timeout, what)?;
        Ok(String::from_utf8_lossy(&value).into_owned())
    }

    fn compare_launch(&mut self, launch: &Launch) -> Result<()> {
        let me = self.node_rank;
        same_build(me, &self.node0s("job/build", "node 0's build")?, &launch.build)?;
        let theirs = self.node0s("job/max_restarts", "node 0's --max-restarts")?;
        if theirs != launch.max_restarts.to_string() {
            return Err(Error::Env(format!(
                "node {me} was started with --max-restarts {} but node 0 with {theirs}: every node must \
                 take the same restarts, together",
                launch.max_restarts
            )));
        }
        Ok(())
    }

    fn compare_settings(&mut self, cfg: &RunConfig, dataset: &str) -> Result<()> {
        let me = self.node_rank;
        let theirs = self.node0s("job/config", "node 0's settings")?;
        let theirs = config::parse_resolved(&theirs, Path::new("(node 0's config)"))?;
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
        let their_dataset = self.node0s("job/dataset", "node 0's dataset")?;
        if their_dataset != dataset {
            return Err(Error::Env(format!(
                "node {me} reads another dataset than node 0 ({dataset} here, {their_dataset} on node 0): \
                 data.path must hold the same prepared dataset on every node"
            )));
        }
        Ok(())
    }

    /// Node 0's probe file, seen through this node's run directory.
    fn find_probe(&mut self, run_dir: &Path) -> Result<()> {
        let probe = self.node0s("job/probe", "node 0's probe file")?;
        let deadline = Instant::now() + PROBE_WAIT;
        while std::fs::read_to_string(run_dir.join(&probe)).ok().as_deref() != Some(probe.as_str()) {
            if Instant::now() > deadline {
                return Err(Error::RunDir {
                    path: run_dir.to_path_buf(),
                    message: format!(
                        "node {} cannot see the file node 0 wrote in it: the run directory must be on \
                         storage every node shares (NFS, Lustre, a ReadWriteMany volume), as every rank \
                         resumes from the checkpoints rank 0 writes there",
                        self.node_rank
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
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
