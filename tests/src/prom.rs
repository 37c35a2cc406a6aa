//! Reading the Prometheus text format an agent serves.

/// The value of the series of `name` whose labels include all of `labels`
/// (summed if several match).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            let v: f64 = rest.rsplit(' ').next().and_then(|v| v.parse().ok())?;
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}
