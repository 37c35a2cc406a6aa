//! netobs: eBPF observability for Docker Swarm overlay networks.
//!
//! Data flows one way: `datapath` (kernel programs and their maps) ->
//! `flows` (the one model) -> `poll` (one read a second: growth, labels,
//! metrics) -> `export` and `cli` (serving and rendering). `capture` and `replay` feed
//! captured packets to the same programs.
pub mod agent;
pub mod api;
pub mod audit;
pub mod capture;
pub mod cli;
pub mod datapath;
pub mod export;
pub mod flows;
pub mod inventory;
pub mod netlink;
pub mod poll;
pub mod privileges;
pub mod replay;
