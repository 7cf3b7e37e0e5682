//! The data plane: events in, delivery jobs, signed HTTP attempts out, and what they leave
//! behind (attempt log, dead letters, counters). Talks to NATS; knows nothing of Kubernetes.

pub mod attempt_log;
pub mod delivery;
pub mod event_index;
pub mod fifo_queue;
pub mod inbound;
pub mod ingest;
pub mod inspect;
pub mod job;
pub mod plan;
pub mod publisher;
pub mod replay;
pub mod route_store;
pub mod router;
pub mod stats;
pub mod subject_reader;
pub mod topology;
