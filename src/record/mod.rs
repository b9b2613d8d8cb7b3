//! Recorded data: the HDF5 episode format the policy was trained on (reader
//! and incremental writer) and session recording.

pub mod episode;
pub mod session;
pub mod writer;

pub use episode::{collect_episode_paths, Episode, EpisodeError, EpisodeLayout};
