//! Settings a valid config carries but the run will not read: not errors (a recipe switched to
//! `data.source=generated` for a quick try keeps its `data.path`), but a user who set them by
//! mistake should hear it before hours of training on something else.
use crate::config::{DataSource, RunConfig};

/// One line per setting the run ignores, saying why and what would make it count.
pub fn unused_settings(cfg: &RunConfig) -> Vec<String> {
    let mut notes = Vec::new();
    let path = cfg.data.path.as_ref().filter(|p| !p.as_os_str().is_empty());
    if let (DataSource::Generated, Some(path)) = (cfg.data.source, path) {
        notes.push(format!(
            "data.path ({}) is not read: data.source is generated, so the ranks draw their own images \
             (set data.source: prepared to train on that dataset)",
            path.display()
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load;

    fn demo(sets: &[&str]) -> RunConfig {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.yaml");
        let sets: Vec<_> = sets.iter().map(|s| s.parse().unwrap()).collect();
        load(std::path::Path::new(config), &sets).unwrap()
    }

    #[test]
    fn a_dataset_path_beside_generated_data_is_named() {
        assert!(unused_settings(&demo(&[])).is_empty());
        assert!(unused_settings(&demo(&["data.path="])).is_empty());
        let notes = unused_settings(&demo(&["data.path=data/cifar10"]));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("data.path (data/cifar10) is not read: data.source is generated"),
            "{notes:?}"
        );
        let prepared = demo(&["data.path=data/cifar10", "data.source=prepared"]);
        assert!(unused_settings(&prepared).is_empty());
    }
}
