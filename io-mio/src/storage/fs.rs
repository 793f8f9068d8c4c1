//! The file operations the log writer and the compactor use, behind a trait so tests can make
//! them fail (a full disk, an I/O error) at a chosen point. Reading at recovery uses `std::fs`
//! directly: nothing there needs a fault to be injected.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A file written at explicit offsets. Positional writes (not `O_APPEND`) let the writer
/// rewrite a region whose fsync failed without ever making the file shorter than what was
/// acknowledged.
pub trait LogFile: Send + fmt::Debug {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file at `len` (or extends it with zeroes).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Directory operations around log files.
pub trait Fs: Send + Sync + fmt::Debug {
    /// Opens `path` for writing, creating it if it does not exist; `truncate` empties it.
    fn open(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn LogFile>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (a created, renamed or removed file).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsFs;

#[derive(Debug)]
struct OsFile(File);

impl LogFile for OsFile {
    #[cfg(unix)]
    fn write_all_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    /// Windows' positional write (`seek_write`) may write less than asked, and has no
    /// `write_all` of its own.
    #[cfg(windows)]
    fn write_all_at(&mut self, mut offset: u64, mut buf: &[u8]) -> io::Result<()> {
        use std::os::windows::fs::FileExt;
        while !buf.is_empty() {
            match self.0.seek_write(buf, offset) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    buf = &buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Fs for OsFs {
    fn open(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    /// Windows cannot open a directory as a file to flush it, and needs no such flush: NTFS
    /// journals its directory entries (creations, renames, removals) itself.
    #[cfg(windows)]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}
