//! The robot model: the Serbot's omniwheel geometry and kinematics
//! (`kinematics`) and its per-robot calibration (`calib`: geometry, the
//! wheel byte ↔ speed table, loaded from `calib/*.toml`). Pure data and
//! maths: the motor loop, the board emulator and the simulated base all use
//! it, it uses none of them.

pub mod calib;
pub mod kinematics;
