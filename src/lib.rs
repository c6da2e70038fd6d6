//! `cascade`: send a notification on one channel first, watch whether the
//! customer read it, and escalate to the next channel only when they did not.

#![forbid(unsafe_code)]

pub mod channels;
pub mod config;
pub mod core;
pub mod dev;
pub mod http;
pub mod notification;
pub mod pii;
pub mod report;
pub mod runtime;
pub mod segments;
