//! Each read's figures over the last few seconds (of the monotonic clock):
//! what every finding sums.
use std::collections::VecDeque;

pub struct Window<T> {
    secs: f64,
    reads: VecDeque<(f64, T)>,
}

impl<T> Window<T> {
    pub fn new(secs: f64) -> Window<T> {
        Window {
            secs,
            reads: VecDeque::new(),
        }
    }

    /// Adds the read at `now` and forgets those `secs` or more before it.
    pub fn push(&mut self, now: f64, read: T) {
        self.reads.push_back((now, read));
        while self
            .reads
            .front()
            .is_some_and(|(t, _)| now - t >= self.secs)
        {
            self.reads.pop_front();
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.reads.iter().map(|(_, r)| r)
    }
}
