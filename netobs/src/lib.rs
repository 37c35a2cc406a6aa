//! netobs: eBPF observability for Docker Swarm overlay networks.
//!
//! Data flows one way: `datapath` (kernel programs and their maps) and
//! `inventory` (the Docker engine) -> `flows` (the one model, where the two
//! join) -> `poll` (one read a second: growth, labels, groups) -> `export`
//! (metrics, alerts, the API's documents, served over HTTP) -> `cli`
//! (parse, call, render). `api` holds the types of the JSON API, the one
//! contract between the agent and its clients. `capture` and `replay` feed
//! captured packets to the same programs; `audit` judges the model against
//! the kernel's IPsec state. Nothing imports a layer after its own.
pub mod agent;
pub mod api;
pub mod audit;
pub mod capture;
pub mod cli;
pub mod client;
pub mod datapath;
pub mod doctor;
pub mod export;
pub mod flows;
pub mod host;
pub mod inventory;
pub mod loss;
pub mod netlink;
pub mod poll;
pub mod privileges;
pub mod replay;
pub mod time;
pub mod token;
pub mod underlay;
