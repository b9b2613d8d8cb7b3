//! mvla: on-robot controller for a Mobile-VLA policy.
//!
//! Camera → preprocessing → policy → motor loop, in one process. See the
//! README for the layout map; `shared/design/ARCHITECTURE.md` for the design.

pub mod action;
pub mod backoff;
pub mod bench;
pub mod bounds;
pub mod capture;
pub mod channel;
pub mod clock;
pub mod config;
pub mod control;
pub mod doctor;
pub mod drive;
pub mod error;
pub mod eval;
pub mod fault;
pub mod frame;
pub mod fuzz;
pub mod hex;
pub mod logging;
pub mod npy;
pub mod pipeline;
pub mod policy;
pub mod preprocess;
pub mod realtime;
pub mod record;
pub mod robot;
pub mod rtlog;
pub mod run;
pub mod sim;
pub mod systemd;
pub mod telemetry;
pub mod textfile;
pub mod trial;
