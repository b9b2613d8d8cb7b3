//! The closed-loop simulator (software in the loop): the world (scenario files
//! as data), the base driven by the wheel bytes the board receives, the judge,
//! the expert operator, and the CPU renderer that plays the robot's camera.
//!
//! The runtime under test is unchanged: frames from [`crate::capture::sim`]
//! go through the same inference stage, history, motor loop, drive mode,
//! wheel encoding and SLCAN board protocol as on the robot. The judge and the
//! expert read the world and the base only.

pub mod base;
pub mod collect;
pub mod expert;
pub mod judge;
pub mod lockstep;
pub mod plot;
pub mod render;
pub mod rng;
pub mod trials;
pub mod world;

/// Give the finished file `tmp` its name `path` unless `path` exists:
/// hard link + remove is an atomic "rename, never overwrite"; `tmp` is gone
/// either way.
pub(crate) fn publish_new(tmp: &std::path::Path, path: &std::path::Path) -> std::io::Result<()> {
    let linked = std::fs::hard_link(tmp, path);
    let _ = std::fs::remove_file(tmp);
    linked
}
