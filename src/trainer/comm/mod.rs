//! Trainer-side collectives: the NCCL backend, which needs CUDA device memory and so lives with
//! the code that links libtorch. Host backends (the CPU ring) come from the library.
pub mod nccl;
