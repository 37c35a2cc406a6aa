//! The agent's read loop as the benchmarks run it: the poller and the
//! exporter of `netobs run`, on one interface (`lo`, slot 1), without the
//! runtime around them. Shared by `scale.rs` and `series.rs` through
//! `#[path]` (each bench is a crate of its own).
use std::{sync::Arc, time::Duration};

use netobs::{
    datapath::Datapath,
    export::exporter::{Exporter, LastRequests},
    export::{
        alerts::{Alerts, Policy},
        metrics::Metrics,
    },
    inventory::Inventory,
    poll::{Iface, Poller, Read},
};

/// Series the benches allow: more than any of them makes.
const MAX_SERIES: usize = 10_000;

pub struct Agent {
    pub poller: Poller,
    pub exporter: Exporter,
    inv: Arc<Inventory>,
    ifaces: [Iface; 1],
    last: LastRequests,
}

impl Agent {
    pub fn new(inv: Inventory) -> Agent {
        Agent {
            poller: Poller::new(MAX_SERIES),
            exporter: Exporter::new(
                Metrics::new(MAX_SERIES).expect("registry"),
                Alerts::new(Policy::default()),
                Duration::from_secs(300),
                Default::default(),
            ),
            inv: Arc::new(inv),
            ifaces: [(1, "lo".to_owned(), 1)],
            last: LastRequests::default(),
        }
    }

    /// One read and its export, as the agent does every second.
    pub fn read(&mut self, dp: &Datapath) -> Read {
        let mut read = self
            .poller
            .poll(dp, &self.ifaces, &self.inv)
            .expect("agent read");
        self.exporter.export(
            &mut read,
            &self.ifaces,
            &self.inv,
            &self.last,
            &Default::default(),
        );
        read
    }
}
