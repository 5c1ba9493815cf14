//! PD's GC safe point when PD runs on its own: persisted in PD's data directory and only ever
//! raised. Stores read it with `GetGCSafePoint` on their heartbeats and collect garbage below
//! it on the regions they lead (as TiKV's GC workers do).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::txn_types::TimeStamp;

/// The persisted safe point.
pub struct SafePointFile {
    value: Mutex<TimeStamp>,
    file: PathBuf,
}

impl SafePointFile {
    const FILE: &'static str = "gc-safe-point";

    /// Opens (or starts at zero) the safe point kept in `dir`.
    pub fn open(dir: &Path) -> std::io::Result<SafePointFile> {
        let file = dir.join(Self::FILE);
        let value = match std::fs::read(&file) {
            Ok(b) => TimeStamp::new(u64::from_be_bytes(b.as_slice().try_into().map_err(
                |_| {
                    std::io::Error::other(format!(
                        "{} is damaged (expected 8 bytes); delete it (GC starts over) or restore it",
                        file.display()
                    ))
                },
            )?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TimeStamp::new(0),
            Err(e) => return Err(e),
        };
        Ok(SafePointFile {
            value: Mutex::new(value),
            file,
        })
    }

    /// The safe point in force.
    pub fn get(&self) -> TimeStamp {
        *self.value.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises the safe point to `requested` (never lowers it); returns the one in force.
    pub fn raise(&self, requested: TimeStamp) -> std::io::Result<TimeStamp> {
        let mut value = self.value.lock().unwrap_or_else(|p| p.into_inner());
        if requested > *value {
            let tmp = self.file.with_extension("tmp");
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&requested.into_inner().to_be_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)?;
            *value = requested;
        }
        Ok(*value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_safe_point_only_rises_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let sp = SafePointFile::open(dir.path()).unwrap();
        assert_eq!(sp.raise(TimeStamp::new(10)).unwrap(), TimeStamp::new(10));
        assert_eq!(sp.raise(TimeStamp::new(5)).unwrap(), TimeStamp::new(10));
        assert_eq!(
            SafePointFile::open(dir.path()).unwrap().get(),
            TimeStamp::new(10)
        );
    }
}
