//! Recorded data: the HDF5 episode format the policy was trained on (reader
//! and incremental writer) and session recording.

pub mod episode;
pub mod probe;
pub mod session;
pub mod writer;

pub use episode::{collect_episode_paths, Episode, EpisodeError, EpisodeLayout};

/// A name that becomes part of a file name (scenarios, sessions): 1 to
/// `max_len` characters of A-Z a-z 0-9 _ -, so it cannot leave its folder.
pub fn is_plain_name(s: &str, max_len: usize) -> bool {
    (1..=max_len).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
