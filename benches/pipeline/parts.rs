//! The pipeline bench's parts, shared with the soak and scale-out benches; each bench uses
//! some of them.
#![allow(dead_code)]

#[path = "harness.rs"]
pub mod harness;
#[path = "machine.rs"]
pub mod machine;
#[path = "../common/numbers.rs"]
pub mod numbers;
#[path = "pacing.rs"]
pub mod pacing;
#[path = "procs.rs"]
pub mod procs;
#[path = "publisher.rs"]
pub mod publisher;
#[path = "receiver.rs"]
pub mod receiver;
#[path = "../common/sections.rs"]
pub mod sections;
#[path = "world.rs"]
pub mod world;
