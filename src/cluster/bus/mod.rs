//! The cluster bus.

pub mod msg;
