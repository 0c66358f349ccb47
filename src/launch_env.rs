//! torchrun's environment contract (CONVENTIONS.md 1.1): the launcher writes it for every rank, the
//! rank reads it back. Any tool that understands torchrun workers understands ours.
use crate::error::{Error, Result};

/// Where a rank sits in the job, as the torchrun variables describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankEnv {
    pub rank: u32,
    pub local_rank: u32,
    pub world_size: u32,
    pub local_world_size: u32,
    /// Node index (torchrun's GROUP_RANK when there is one agent per node).
    pub group_rank: u32,
    pub master_addr: String,
    pub master_port: u16,
    pub restart_count: u32,
    pub max_restarts: u32,
    pub run_id: String,
}

impl RankEnv {
    /// A lone rank: what a trainer started by hand (without a launcher) assumes.
    pub fn single(master_port: u16) -> Self {
        RankEnv {
            rank: 0,
            local_rank: 0,
            world_size: 1,
            local_world_size: 1,
            group_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port,
            restart_count: 0,
            max_restarts: 0,
            run_id: "none".into(),
        }
    }

    /// The variables to export to this rank's process, torchrun's full set.
    pub fn to_vars(&self) -> Vec<(&'static str, String)> {
        let group_world_size = self.world_size / self.local_world_size.max(1);
        vec![
            ("RANK", self.rank.to_string()),
            ("LOCAL_RANK", self.local_rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_WORLD_SIZE", self.local_world_size.to_string()),
            ("GROUP_RANK", self.group_rank.to_string()),
            ("GROUP_WORLD_SIZE", group_world_size.to_string()),
            ("ROLE_RANK", self.rank.to_string()),
            ("ROLE_WORLD_SIZE", self.world_size.to_string()),
            ("ROLE_NAME", "default".into()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("TORCHELASTIC_RESTART_COUNT", self.restart_count.to_string()),
            ("TORCHELASTIC_MAX_RESTARTS", self.max_restarts.to_string()),
            ("TORCHELASTIC_RUN_ID", self.run_id.clone()),
            ("TORCHELASTIC_USE_AGENT_STORE", "False".into()),
        ]
    }

    /// Reads the contract from `vars`; `None` when no launcher set it (RANK absent).
    pub fn from_vars(vars: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        if vars("RANK").is_none() {
            return Ok(None);
        }
        let num = |name: &str| -> Result<u32> {
            let text = vars(name).ok_or_else(|| Error::Env(format!("RANK is set but {name} is not")))?;
            text.trim()
                .parse()
                .map_err(|_| Error::Env(format!("{name}={text:?} is not a non-negative integer")))
        };
        let env = RankEnv {
            rank: num("RANK")?,
            local_rank: num("LOCAL_RANK")?,
            world_size: num("WORLD_SIZE")?,
            local_world_size: num("LOCAL_WORLD_SIZE")?,
            group_rank: num("GROUP_RANK")?,
            master_addr: vars("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: num("MASTER_PORT")?
                .try_into()
                .map_err(|_| Error::Env("MASTER_PORT is not a port number".into()))?,
            restart_count: vars("TORCHELASTIC_RESTART_COUNT").and_then(|v| v.parse().ok()).unwrap_or(0),
            max_restarts: vars("TORCHELASTIC_MAX_RESTARTS").and_then(|v| v.parse().ok()).unwrap_or(0),
            run_id: vars("TORCHELASTIC_RUN_ID").unwrap_or_else(|| "none".into()),
        };
        env.check()?;
        Ok(Some(env))
    }

    /// Reads the contract from the process environment.
    pub fn from_process() -> Result<Option<Self>> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn check(&self) -> Result<()> {
        if self.rank >= self.world_size || self.local_rank >= self.local_world_size {
            return Err(Error::Env(format!(
                "RANK={} LOCAL_RANK={} do not fit WORLD_SIZE={} LOCAL_WORLD_SIZE={}",
                self.rank, self.local_rank, self.world_size, self.local_world_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn vars_round_trip() {
        let env = RankEnv {
            rank: 5,
            local_rank: 1,
            world_size: 8,
            local_world_size: 2,
            group_rank: 2,
            ..RankEnv::single(29500)
        };
        let map: HashMap<_, _> = env.to_vars().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(map["GROUP_WORLD_SIZE"], "4");
        let back = RankEnv::from_vars(|k| map.get(k).cloned()).unwrap().unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn absent_and_inconsistent_env() {
        assert_eq!(RankEnv::from_vars(|_| None).unwrap(), None);
        let bad = |k: &str| match k {
            "RANK" => Some("4".to_string()),
            "WORLD_SIZE" | "LOCAL_WORLD_SIZE" => Some("2".into()),
            _ => Some("0".into()),
        };
        let err = RankEnv::from_vars(bad).unwrap_err().to_string();
        assert!(err.contains("RANK=4"), "{err}");
    }
}
