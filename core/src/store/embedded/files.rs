//! Uploaded files in the data folder: `files/<first two hex digits>/<sha256>`, beside the
//! database and outside any folder the server serves. Written to a temporary name,
//! synced, then renamed, so a file is either whole or absent.

use std::io::Write;
use std::path::PathBuf;

use super::SledStore;
use crate::error::{Error, Result};
use crate::store::FileTable;

fn valid(sha256: &str) -> bool {
    sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SledStore {
    fn file_path(&self, sha256: &str) -> PathBuf {
        self.files_dir().join(&sha256[..2]).join(sha256)
    }

    /// Where uploaded files are kept.
    pub fn files_dir(&self) -> PathBuf {
        self.path.join("files")
    }
}

fn io(what: &str, e: std::io::Error) -> Error {
    Error::Store(format!("{what}: {e}"))
}

impl FileTable for SledStore {
    fn put_file(&self, bytes: &[u8]) -> Result<String> {
        let sha = crate::files::sha256(bytes);
        let target = self.file_path(&sha);
        if target.exists() {
            return Ok(sha);
        }
        let dir = target
            .parent()
            .ok_or_else(|| Error::Store("bad file path".into()))?
            .to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create the files folder", e))?;
        let tmp = dir.join(format!(".{sha}.{}.part", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot write a file", e))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("cannot write a file", e))?;
        drop(f);
        std::fs::rename(&tmp, &target).map_err(|e| io("cannot keep a file", e))?;
        // The rename itself is durable once the folder is.
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync the files folder", e))?;
        Ok(sha)
    }

    fn file(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        if !valid(sha256) {
            return Ok(None);
        }
        match std::fs::read(self.file_path(sha256)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("cannot read a file", e)),
        }
    }
}
