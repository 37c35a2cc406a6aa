//! Wall-clock time, for every layer (the inventory's sync time, flow and
//! alert times): a leaf module, so that nothing imports the model for it.
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in Unix seconds, the unit of every timestamp the API
/// serves.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
