//! The netobs lab: namespaces, links, traffic and packets for the tests and
//! for `cargo xtask demo`. Everything it creates is removed on drop.
pub mod bpffs;
pub mod dashboards;
pub mod esp;
pub mod lab;
pub mod link;
pub mod netns;
pub mod packets;
pub mod privilege;
pub mod prom;
pub mod swarm;
pub mod tmp;
pub mod tmux;
pub mod traffic;
