//! Recorded data: the HDF5 episode format the policy was trained on.

pub mod episode;

pub use episode::{collect_episode_paths, Episode, EpisodeError, EpisodeLayout};
