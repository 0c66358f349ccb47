//! Evaluation networks and metrics: pytorch-fid's Inception-v3 (`inception`), its weights and
//! their identity (`weights`), FID, KID and IS from features in float64 (`stats`), precision,
//! recall, density and coverage from nearest neighbours (`manifold`), feature
//! extraction with cached real statistics (`extract`), image folders (`folders`) and the `eval`
//! command (`command`).
pub mod command;
pub mod extract;
pub mod folders;
pub mod inception;
pub mod manifold;
pub mod stats;
pub mod weights;

#[cfg(test)]
mod tests;
