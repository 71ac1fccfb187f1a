//! Atomic output files: everything is written to a temporary file next to the target,
//! which is synced and renamed over the target only once it is complete. A run that
//! fails (or panics) removes the temporary file, so it never leaves a partial output.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};

use crate::failure::Failure;

/// A usage error (before any work) when `output` is the same file as `input`
/// ([`same_file`]): writing it would replace the user's input.
pub fn refuse_overwriting_input(input: &Path, output: &Path) -> anyhow::Result<()> {
    if same_file(input, output) {
        return Err(Failure::usage(format!(
            "refusing to write the output over the input: {} and {} are the same file; \
             give another -o",
            input.display(),
            output.display()
        ))
        .into());
    }
    Ok(())
}

/// Whether `output` names the same file as `input`: the same path, another spelling of
/// it, a symbolic link to it or a hard link of it. Standard input or output (`-`) and an
/// output that does not exist yet never do.
pub fn same_file(input: &Path, output: &Path) -> bool {
    if input.as_os_str() == "-" || output.as_os_str() == "-" {
        return false;
    }
    // Both followed through symbolic links.
    let (Ok(a), Ok(b)) = (fs::metadata(input), fs::metadata(output)) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        matches!(
            (fs::canonicalize(input), fs::canonicalize(output)),
            (Ok(x), Ok(y)) if x == y
        )
    }
}

/// An output file being written; becomes visible under its name only on [`commit`].
///
/// ```ignore
/// let mut out = AtomicFile::create(Path::new("out.png"))?;
/// out.writer().write_all(&bytes)?;
/// out.commit()?; // without this (error, early return, panic) the temp file is removed
/// ```
///
/// [`commit`]: AtomicFile::commit
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file `.NAME.tmp-<pid>` in the target's directory (the
    /// rename is only atomic within one file system). Fails early, before any work is
    /// done, when the directory does not exist or cannot be written.
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")
        })?;
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let pid = std::process::id();
        let mut attempt = 0u32;
        loop {
            let mut temp_name = OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".tmp-{pid}"));
            if attempt > 0 {
                temp_name.push(format!("-{attempt}"));
            }
            let temp = dir.join(temp_name);
            match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => {
                    crate::signals::guard(&temp);
                    return Ok(AtomicFile {
                        target: target.to_path_buf(),
                        temp,
                        writer: Some(BufWriter::new(file)),
                        committed: false,
                    });
                }
                // A stale file from an earlier process with the same pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Fails as [`AtomicFile::create`] would (missing or unwritable directory) without
    /// leaving a file: the temporary file is created and removed at once. For checking
    /// an output before long work, whose result is written only at the end.
    pub fn check_writable(target: &Path) -> io::Result<()> {
        AtomicFile::create(target).map(drop)
    }

    /// The buffered writer of the temporary file (seekable, as WAV writers need).
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        self.writer
            .as_mut()
            .expect("the writer exists until commit")
    }

    /// Flushes and syncs the temporary file, then renames it over the target.
    pub fn commit(mut self) -> io::Result<()> {
        let writer = self.writer.take().expect("commit is called once");
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        crate::signals::release();
        // Make the rename itself durable; not every file system supports syncing a
        // directory, and the data is already complete, so a failure here is ignored.
        #[cfg(unix)]
        if let Some(dir) = self.temp.parent() {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Close before removing (required on Windows).
            drop(self.writer.take());
            let _ = fs::remove_file(&self.temp);
            crate::signals::release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ipc-codec-atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_replaces_the_target_and_leaves_no_temp_file() {
        let dir = scratch("commit");
        let target = dir.join("out.bin");
        fs::write(&target, b"old").unwrap();
        let mut out = AtomicFile::create(&target).unwrap();
        out.writer().write_all(b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"old", "visible before commit");
        assert_eq!(names(&dir).len(), 2, "temp file beside the target");
        out.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(names(&dir), ["out.bin"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dropping_without_commit_removes_the_temp_file() {
        let dir = scratch("drop");
        let target = dir.join("out.bin");
        let mut out = AtomicFile::create(&target).unwrap();
        out.writer().write_all(b"partial").unwrap();
        drop(out);
        assert!(names(&dir).is_empty());
        // Also when the work panics.
        let result = std::panic::catch_unwind(|| {
            let mut out = AtomicFile::create(&target).unwrap();
            out.writer().write_all(b"partial").unwrap();
            panic!("failed while writing");
        });
        assert!(result.is_err());
        assert!(names(&dir).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_file_sees_spellings_and_links() {
        let dir = scratch("same");
        let input = dir.join("in.png");
        fs::write(&input, b"data").unwrap();
        let other = dir.join("other.png");
        fs::write(&other, b"data").unwrap();
        assert!(same_file(&input, &input));
        assert!(same_file(&input, &dir.join(".").join("in.png")));
        assert!(!same_file(&input, &other));
        assert!(!same_file(&input, &dir.join("new.ipc")));
        assert!(!same_file(Path::new("-"), Path::new("-")));
        fs::hard_link(&input, dir.join("hard.png")).unwrap();
        assert!(same_file(&input, &dir.join("hard.png")));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&input, dir.join("soft.png")).unwrap();
            assert!(same_file(&input, &dir.join("soft.png")));
            assert!(same_file(&dir.join("soft.png"), &input));
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_fails_at_create() {
        let dir = scratch("missing");
        assert!(AtomicFile::create(&dir.join("no").join("out.bin")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
