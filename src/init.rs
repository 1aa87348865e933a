//! `guichet init DIR`: a small starter office for an administrator who starts from nothing:
//! one department with its staff and groups, the calendar with the official holidays, the
//! standard notices, one procedure and its procedure tests. The files are the ones in
//! `examples/starter/` (and the example office's calendar and notices), compiled in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The starter's files: path in the new folder, content.
const FILES: &[(&str, &str)] = &[
    (
        "office.rhai",
        include_str!("../examples/starter/office.rhai"),
    ),
    ("calendar.rhai", include_str!("../scripts/calendar.rhai")),
    ("notices.rhai", include_str!("../scripts/notices.rhai")),
    (
        "permits/outdoor_sign.rhai",
        include_str!("../examples/starter/permits/outdoor_sign.rhai"),
    ),
    (
        "tests/outdoor_sign.rhai",
        include_str!("../examples/starter/tests/outdoor_sign.rhai"),
    ),
];

/// Writes the starter office into `dir`, which must not exist or be empty; returns the
/// files written.
pub fn init(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: guichet init writes a new scripts folder",
            dir.display()
        );
    }
    let mut written = Vec::new();
    for (name, content) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
