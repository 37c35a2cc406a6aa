//! The netobs lab: namespaces, links, traffic and packets for tests and the demo.
pub mod packets;
pub mod privilege;
