//! Rendezvous: a small TCP key-value store with c10d TCPStore semantics, hosted by the node-0
//! launcher, through which ranks find each other (ring addresses, NCCL ids) and agree (barriers,
//! counters). Keys are scoped by run id; clients must present the run's token. Torch-free.
mod client;
mod protocol;
mod server;

#[cfg(test)]
mod tests;

pub use client::StoreClient;
pub use server::StoreServer;

/// Environment variable carrying the store token from the launcher to its ranks.
pub const TOKEN_ENV: &str = "GANLAUNCH_STORE_TOKEN";

/// A fresh random token (from the OS's entropy, via the std hasher's random keys and the clock).
pub fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut words = [0u64; 2];
    for (i, word) in words.iter_mut().enumerate() {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        hasher.write_usize(i);
        hasher.write_u32(std::process::id());
        *word = hasher.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}
