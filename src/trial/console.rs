//! The operator console (`mvla trial`).
