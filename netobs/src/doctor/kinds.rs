//! The README's table of overlay-health findings, from the one list
//! (`api::HealthKind`).
use crate::api::HealthKind;

pub fn reference_table() -> String {
    let mut out = String::from("| kind | severity | meaning |\n|---|---|---|\n");
    for k in HealthKind::ALL {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            k.name(),
            k.severity(),
            k.meaning().split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    out
}
