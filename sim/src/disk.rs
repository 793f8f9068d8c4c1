//! The disk: one directory of named files, as the daemon's persistence directory. File data is
//! volatile until an fsync of the file covers it; directory entries (a file created, renamed or
//! removed) are volatile until an fsync of the directory.
//!
//! A crash that is a power loss keeps, of the directory, what the last directory fsync made
//! durable plus a random prefix of the metadata operations after it, and of each file, the
//! synced bytes and, when writes tear, a random prefix of the rest, possibly with a bit flipped
//! in its last frame. A process crash keeps everything (the page cache survives), still
//! volatile. A write error writes a prefix of its bytes and fails every later operation until
//! the broker restarts.
//!
//! Nothing here knows what the files hold: the host writes them as the daemon's storage does
//! (`storage.rs`) and recovery reads them through midge-core's `persist::recovery`.

use crate::rng::Rng;
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};

/// A file's content.
#[derive(Debug, Default, Clone)]
pub struct File {
    pub data: Vec<u8>,
    /// Bytes an fsync has made durable.
    pub synced: usize,
}

type Ino = u64;

/// A change to the directory not yet made durable by a directory fsync.
#[derive(Debug, Clone)]
enum DirOp {
    Create(String, Ino),
    Rename(String, String),
    Remove(String),
}

#[derive(Debug, Default)]
pub struct Disk {
    files: BTreeMap<Ino, File>,
    next_ino: Ino,
    /// The directory as the running system sees it.
    entries: BTreeMap<String, Ino>,
    /// The directory as the last directory fsync left it on disk.
    durable: BTreeMap<String, Ino>,
    /// Metadata operations since then, in order.
    pending: Vec<DirOp>,
    /// A write failed: every later operation fails until the restart.
    pub failed: bool,
}

/// What a crash did to the disk.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrashReport {
    pub kept: u64,
    pub lost: u64,
    pub flipped: bool,
    /// Directory operations not made durable that the crash undid.
    pub undone: u32,
}

fn apply(dir: &mut BTreeMap<String, Ino>, op: &DirOp) {
    match op {
        DirOp::Create(name, ino) => {
            dir.insert(name.clone(), *ino);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = dir.remove(from) {
                dir.insert(to.clone(), ino);
            }
        }
        DirOp::Remove(name) => {
            dir.remove(name);
        }
    }
}

impl Disk {
    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn file(&self, name: &str) -> Option<&File> {
        self.entries.get(name).and_then(|ino| self.files.get(ino))
    }

    fn file_mut(&mut self, name: &str) -> Option<&mut File> {
        let ino = self.entries.get(name)?;
        self.files.get_mut(ino)
    }

    pub fn read(&self, name: &str) -> Option<Bytes> {
        self.file(name).map(|f| Bytes::copy_from_slice(&f.data))
    }

    pub fn len(&self, name: &str) -> usize {
        self.file(name).map_or(0, |f| f.data.len())
    }

    /// Opens `name` for writing, creating it (a new directory entry) or emptying it.
    pub fn create(&mut self, name: &str) -> bool {
        if self.failed {
            return false;
        }
        if let Some(f) = self.file_mut(name) {
            // Emptying an existing file: treated as durable at once (it never happens to a
            // file whose content matters: names are never reused while they hold data).
            *f = File::default();
            return true;
        }
        self.next_ino += 1;
        let ino = self.next_ino;
        self.files.insert(ino, File::default());
        let op = DirOp::Create(name.to_owned(), ino);
        apply(&mut self.entries, &op);
        self.pending.push(op);
        true
    }

    /// Appends bytes, or on a write error a prefix of them (returned: bytes written).
    pub fn append(&mut self, name: &str, bytes: &[u8], error: Option<&mut Rng>) -> usize {
        if self.failed {
            return 0;
        }
        let n = match error {
            Some(rng) => {
                self.failed = true;
                rng.below(bytes.len() as u64 + 1) as usize
            }
            None => bytes.len(),
        };
        if let Some(f) = self.file_mut(name) {
            f.data.extend_from_slice(&bytes[..n]);
        }
        n
    }

    /// An fsync of `name` that started when it was `upto` bytes long completed.
    pub fn sync(&mut self, name: &str, upto: usize) -> bool {
        if self.failed {
            return false;
        }
        if let Some(f) = self.file_mut(name) {
            f.synced = f.synced.max(upto.min(f.data.len()));
        }
        true
    }

    /// Cuts `name` at `len` and fsyncs it.
    pub fn truncate(&mut self, name: &str, len: usize) -> bool {
        if self.failed {
            return false;
        }
        match self.file_mut(name) {
            Some(f) => {
                f.data.truncate(len);
                f.synced = f.data.len();
                true
            }
            None => false,
        }
    }

    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        if self.failed || !self.entries.contains_key(from) {
            return false;
        }
        let op = DirOp::Rename(from.to_owned(), to.to_owned());
        apply(&mut self.entries, &op);
        self.pending.push(op);
        true
    }

    pub fn remove(&mut self, name: &str) -> bool {
        if self.failed || !self.entries.contains_key(name) {
            return false;
        }
        let op = DirOp::Remove(name.to_owned());
        apply(&mut self.entries, &op);
        self.pending.push(op);
        true
    }

    /// A directory fsync completed: its entries as they are now survive any crash.
    pub fn sync_dir(&mut self) -> bool {
        if self.failed {
            return false;
        }
        self.durable = self.entries.clone();
        self.pending.clear();
        self.collect();
        true
    }

    /// Forgets files no directory state, durable or not, can name any more.
    fn collect(&mut self) {
        let mut live: BTreeSet<Ino> = self.entries.values().copied().collect();
        live.extend(self.durable.values().copied());
        for op in &self.pending {
            if let DirOp::Create(_, ino) = op {
                live.insert(*ino);
            }
        }
        self.files.retain(|ino, _| live.contains(ino));
    }

    /// The machine or the process goes down.
    pub fn crash(
        &mut self,
        rng: &mut Rng,
        power_loss: bool,
        tear: bool,
        bit_flip: f64,
    ) -> CrashReport {
        let mut report = CrashReport::default();
        let lose_everything_unsynced = power_loss || self.failed;
        if lose_everything_unsynced {
            // The directory: what was synced, then the metadata operations up to a point.
            let n = self.pending.len();
            let keep = match rng.below(3) {
                _ if n == 0 => 0,
                0 => 0,
                1 => n,
                _ => rng.below(n as u64 + 1) as usize,
            };
            let mut entries = std::mem::take(&mut self.durable);
            for op in &self.pending[..keep] {
                apply(&mut entries, op);
            }
            report.undone = (n - keep) as u32;
            self.pending.clear();
            self.entries = entries.clone();
            self.durable = entries;
            self.collect();
        }
        for ino in self.entries.values() {
            let Some(f) = self.files.get_mut(ino) else {
                continue;
            };
            if lose_everything_unsynced {
                let unsynced = f.data.len() - f.synced;
                let keep = if tear && unsynced > 0 {
                    // Frame boundaries and the ends are likelier than any byte.
                    match rng.below(4) {
                        0 => 0,
                        1 => unsynced,
                        _ => rng.below(unsynced as u64 + 1) as usize,
                    }
                } else {
                    0
                };
                let end = f.synced + keep;
                report.lost += (f.data.len() - end) as u64;
                f.data.truncate(end);
                if keep > 0 && rng.chance(bit_flip) {
                    // Only in the last frame kept: a flip in an earlier unsynced frame with an
                    // intact frame after it would look like corruption, which a torn write at
                    // the end of the log never is.
                    let start = last_frame_start(&f.data, f.synced);
                    if start < end {
                        let at = start + rng.below((end - start) as u64) as usize;
                        f.data[at] ^= 1 << rng.below(8);
                        report.flipped = true;
                    }
                }
                // What survived a power loss is what the disk holds.
                f.synced = f.data.len();
            }
            report.kept += f.data.len() as u64;
        }
        self.failed = false;
        report
    }
}

/// The offset of the last frame that starts at or after `from` (a frame boundary) in `data`.
fn last_frame_start(data: &[u8], from: usize) -> usize {
    let mut at = from;
    loop {
        if data.len() < at + 4 {
            return at;
        }
        let len = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
        let next = at.saturating_add(8).saturating_add(len);
        if next >= data.len() {
            return at;
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_volatile_until_the_directory_is_synced() {
        let mut rng = Rng::new(7);
        let mut lost_rename = false;
        for _ in 0..64 {
            let mut disk = Disk::default();
            assert!(disk.create("a"));
            disk.append("a", b"hello", None);
            assert!(disk.sync("a", 5));
            assert!(disk.sync_dir());
            assert!(disk.create("t"));
            disk.append("t", b"snap", None);
            assert!(disk.sync("t", 4));
            assert!(disk.rename("t", "s"));
            assert!(disk.remove("a"));
            assert_eq!(disk.names(), ["s"]);
            disk.crash(&mut rng, true, true, 0.0);
            let names = disk.names();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            // A prefix of create, rename, remove: never "a" gone without "s" there.
            assert!(
                [&["a"][..], &["a", "t"], &["a", "s"], &["s"]].contains(&&names[..]),
                "{names:?}"
            );
            lost_rename |= !names.contains(&"s");
            if names.contains(&"a") {
                assert_eq!(disk.read("a").unwrap(), &b"hello"[..]);
            }
        }
        assert!(lost_rename, "some crash undoes the rename");
        // A process crash keeps everything.
        let mut disk = Disk::default();
        disk.create("x");
        disk.append("x", b"data", None);
        disk.crash(&mut rng, false, true, 0.0);
        assert_eq!(disk.read("x").unwrap(), &b"data"[..]);
    }
}
