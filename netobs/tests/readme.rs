//! The README's metric reference is generated from the one list of metrics
//! in the code; this keeps them equal. `NETOBS_UPDATE_README=1 cargo test
//! --test readme` rewrites the section.
use netobs::export::metrics::reference_table;

const BEGIN: &str = "<!-- metrics:begin (generated from netobs/src/export/metrics.rs) -->\n";
const END: &str = "<!-- metrics:end -->";

#[test]
fn readme_lists_every_metric() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
        panic!("README.md has no generated metrics section ({BEGIN:?} ... {END:?})");
    };
    let current = &readme[a + BEGIN.len()..b];
    let wanted = reference_table();
    if current != wanted {
        if std::env::var_os("NETOBS_UPDATE_README").is_some() {
            let new = format!("{}{BEGIN}{wanted}{}", &readme[..a], &readme[b..]);
            std::fs::write(&path, new).expect("writing README.md");
            return;
        }
        panic!("README.md's metric reference is out of date: run `NETOBS_UPDATE_README=1 cargo xtask test -- --test readme`");
    }
}
