//! Turning the kernel's cumulative per-flow counters into increments.
//!
//! Exported counters must only grow, across relabelling (a flow first seen
//! as `unknown` and later as `backend`) and across flow-table evictions (a
//! flow's entry vanishing). So the agent never exports the table's totals:
//! it adds each flow's growth since the last read to the series the flow
//! has *now*.
use std::collections::HashMap;

use netobs_common::{
    Counter, FlowKey, FlowStats, HTTP_METHOD_SLOTS, HTTP_STATUS_CLASSES, MAX_PATTERNS,
};

/// One flow's growth since the previous read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Growth {
    pub packets: u64,
    pub bytes: u64,
    pub http_requests: [u64; HTTP_METHOD_SLOTS],
    pub http_responses: [u64; HTTP_STATUS_CLASSES],
    pub pattern_hits: [u64; MAX_PATTERNS],
}

impl Growth {
    pub fn is_zero(&self) -> bool {
        *self == Growth::default()
    }
}

fn grew(now: u32, before: u32) -> u64 {
    now.wrapping_sub(before) as u64
}

fn growth(now: &FlowStats, before: Option<&FlowStats>) -> Growth {
    // An entry whose counters went down was evicted and re-created.
    let before = before.filter(|b| b.packets <= now.packets && b.bytes <= now.bytes);
    let zero = FlowStats::default();
    let b = before.unwrap_or(&zero);
    let mut g = Growth {
        packets: now.packets - b.packets,
        bytes: now.bytes - b.bytes,
        ..Growth::default()
    };
    for i in 0..HTTP_METHOD_SLOTS {
        g.http_requests[i] = grew(now.http_requests[i], b.http_requests[i]);
    }
    for i in 0..HTTP_STATUS_CLASSES {
        g.http_responses[i] = grew(now.http_responses[i], b.http_responses[i]);
    }
    for i in 0..MAX_PATTERNS {
        g.pattern_hits[i] = grew(now.pattern_hits[i], b.pattern_hits[i]);
    }
    g
}

#[derive(Default)]
pub struct Aggregator {
    flows: HashMap<FlowKey, FlowStats>,
    counters: Vec<Counter>,
}

impl Aggregator {
    /// Growth of every flow in `now` that grew; forgets flows that are gone.
    pub fn flows<'a>(
        &mut self,
        now: &'a [(FlowKey, FlowStats)],
    ) -> Vec<(&'a FlowKey, &'a FlowStats, Growth)> {
        let mut out = Vec::new();
        let mut next = HashMap::with_capacity(now.len());
        for (k, v) in now {
            let g = growth(v, self.flows.get(k));
            if !g.is_zero() {
                out.push((k, v, g));
            }
            next.insert(*k, *v);
        }
        self.flows = next;
        out
    }

    /// Growth of each interface counter slot.
    pub fn counters(&mut self, now: &[Counter]) -> Vec<Counter> {
        let out = now
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let b = self.counters.get(i).copied().unwrap_or_default();
                Counter {
                    packets: c.packets.saturating_sub(b.packets),
                    bytes: c.bytes.saturating_sub(b.bytes),
                }
            })
            .collect();
        self.counters = now.to_vec();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(packets: u64, gets: u32) -> FlowStats {
        let mut s = FlowStats {
            packets,
            bytes: packets * 100,
            ..FlowStats::default()
        };
        s.http_requests[1] = gets;
        s
    }

    #[test]
    fn growth_is_counted_once() {
        let mut a = Aggregator::default();
        let k = FlowKey::default();
        let first = [(k, stats(3, 1))];
        let g = a.flows(&first);
        assert_eq!(g[0].2.packets, 3);
        assert_eq!(g[0].2.http_requests[1], 1);
        assert!(a.flows(&first).is_empty(), "no growth, nothing to add");
        assert_eq!(a.flows(&[(k, stats(5, 2))])[0].2.packets, 2);
    }

    #[test]
    fn an_evicted_and_recreated_flow_counts_from_zero() {
        let mut a = Aggregator::default();
        let k = FlowKey::default();
        let (ten, four, nine, two) = (
            [(k, stats(10, 0))],
            [(k, stats(4, 0))],
            [(k, stats(9, 0))],
            [(k, stats(2, 0))],
        );
        a.flows(&ten);
        a.flows(&[]);
        assert_eq!(a.flows(&four)[0].2.packets, 4);
        a.flows(&nine);
        assert_eq!(
            a.flows(&two)[0].2.packets,
            2,
            "counters went down: re-created"
        );
    }
}
