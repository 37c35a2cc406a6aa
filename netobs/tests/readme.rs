//! The README's reference tables are generated from the one place in the
//! code that defines each (the metrics, the audit's finding kinds); this
//! keeps them equal. `NETOBS_UPDATE_README=1 cargo test --test readme`
//! rewrites the sections.
use netobs::{audit::finding, doctor::kinds, export::metrics};

/// Each generated section: its name in the markers, and its content.
fn sections() -> [(&'static str, &'static str, String); 3] {
    [
        (
            "metrics",
            "netobs/src/export/metrics.rs",
            metrics::reference_table(),
        ),
        (
            "audit",
            "netobs/src/audit/finding.rs",
            finding::reference_table(),
        ),
        (
            "doctor",
            "netobs/src/api/health.rs",
            kinds::reference_table(),
        ),
    ]
}

#[test]
fn readme_tables_match_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let mut readme = std::fs::read_to_string(&path).expect("README.md");
    let update = std::env::var_os("NETOBS_UPDATE_README").is_some();
    let mut stale = Vec::new();
    for (name, source, wanted) in sections() {
        let begin = format!("<!-- {name}:begin (generated from {source}) -->\n");
        let end = format!("<!-- {name}:end -->");
        let (Some(a), Some(b)) = (readme.find(&begin), readme.find(&end)) else {
            panic!("README.md has no generated {name} section ({begin:?} ... {end:?})");
        };
        if readme[a + begin.len()..b] != wanted {
            stale.push(name);
            readme = format!("{}{begin}{wanted}{}", &readme[..a], &readme[b..]);
        }
    }
    if update {
        std::fs::write(&path, readme).expect("writing README.md");
        return;
    }
    assert!(
        stale.is_empty(),
        "README.md's {stale:?} reference is out of date: run \
         `NETOBS_UPDATE_README=1 cargo xtask test -- --test readme`"
    );
}
