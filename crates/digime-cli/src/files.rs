//! Local files: upload bodies with progress, the `read-all` folder (partial files,
//! renames, the record of what was read), and downloads written whole or not at all.

use crate::exit::Failure;
use digime_protocol::FileHead;
use digime_protocol::read_all::local_file_name;
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// A MIME type from a file's extension, for `push` without `--mime`.
pub fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
}

/// An upload body that moves a progress bar: its position follows the reader's (a
/// body rewound for a repeat after a refresh goes back to 0).
pub struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> Progress<R> {
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        Progress { inner, bar }
    }
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Progress<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let at = self.inner.seek(pos)?;
        self.bar
            .set_position(at.min(self.bar.length().unwrap_or(at)));
        Ok(at)
    }
}

/// Writes a download into a new hidden file beside `path` (`.NAME.PID.partial`, never
/// one that exists), renamed to `path` only once `fill` succeeded: a failed download
/// never leaves a file that looks complete, nor overwrites one of the user's.
pub fn write_whole(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), digime_protocol::Error>,
) -> Result<u64, Failure> {
    let local = |e: std::io::Error| Failure::local(format!("{}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| Failure::input(format!("{}: not a file name", path.display())))?;
    let partial = path.with_file_name(format!(
        ".{}.{}{PARTIAL}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let file = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(local)?;
    let mut sink = BufWriter::new(file);
    let done = fill(&mut sink).map_err(Failure::from).and_then(|()| {
        let file = sink.into_inner().map_err(|e| local(e.into_error()))?;
        file.sync_all().map_err(local)?;
        std::fs::rename(&partial, path).map_err(local)?;
        std::fs::metadata(path).map(|m| m.len()).map_err(local)
    });
    if done.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    done
}

/// What `read-all` keeps in the folder, in `.digime-read-all.json`: each server
/// file it wrote, with its local name and the `updatedDate` it was read at.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    files: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    local: String,
    updated_date: i64,
}

const RECORD: &str = ".digime-read-all.json";
const PARTIAL: &str = ".partial";

/// Whether `path` is one of our partial files (`LOCAL~N.partial`).
fn is_partial(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.strip_suffix(PARTIAL)
        .and_then(|rest| rest.rsplit_once('~'))
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The `read-all` folder. A download is written as `LOCAL~N.partial` (a name no
/// local name can take: a kept name holds no `~`, and no local name ends in
/// `.partial`), and renamed to `LOCAL` once it is complete.
pub struct Folder {
    dir: PathBuf,
    record: Mutex<Record>,
    /// Downloads in progress, by server name: their partial files and bars.
    running: Mutex<HashMap<String, Vec<(PathBuf, ProgressBar)>>>,
    /// Files written by this run, by server name.
    written: Mutex<Vec<String>>,
    next: AtomicU64,
}

impl Folder {
    /// Opens (or creates) the folder, removing the partial files of a run that was
    /// cut off.
    pub fn open(dir: &Path) -> Result<Folder, Failure> {
        let local = |e: std::io::Error| Failure::local(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(local)?;
        for entry in std::fs::read_dir(dir).map_err(local)? {
            let path = entry.map_err(local)?.path();
            if is_partial(&path) && path.is_file() {
                std::fs::remove_file(&path).map_err(local)?;
            }
        }
        let record = match std::fs::read(dir.join(RECORD)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                eprintln!("digime: {RECORD} is unreadable: every file is read again");
                Record::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(e) => return Err(local(e)),
        };
        Ok(Folder {
            dir: dir.to_owned(),
            record: Mutex::new(record),
            running: Mutex::default(),
            written: Mutex::default(),
            next: AtomicU64::new(0),
        })
    }

    /// The files already here and unchanged since they were read, for
    /// `ReadAllOptions::already_read`: a file whose local copy was removed is read again.
    pub fn already_read(&self) -> HashMap<String, i64> {
        let record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        (record.files.iter())
            .filter(|(_, e)| self.dir.join(&e.local).is_file())
            .map(|(name, e)| (name.clone(), e.updated_date))
            .collect()
    }

    /// A writer for a download starting (called on a download thread).
    pub fn partial(&self, name: &str, bar: ProgressBar) -> std::io::Result<Counting> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = (self.dir).join(format!("{}~{n}{PARTIAL}", local_file_name(name)));
        let file = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&path)?;
        (self.running.lock().unwrap_or_else(PoisonError::into_inner))
            .entry(name.to_owned())
            .or_default()
            .push((path, bar.clone()));
        Ok(Counting {
            file: BufWriter::new(file),
            bar,
        })
    }

    fn take(&self, name: &str) -> Option<(PathBuf, ProgressBar)> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let list = running.get_mut(name)?;
        let first = (!list.is_empty()).then(|| list.remove(0));
        if list.is_empty() {
            running.remove(name);
        }
        first
    }

    /// A download is complete: its partial file becomes the local file. Its size.
    pub fn complete(&self, head: &FileHead) -> std::io::Result<u64> {
        let (partial, bar) = self
            .take(&head.name)
            .ok_or_else(|| std::io::Error::other("no partial file for this download"))?;
        bar.finish_and_clear();
        let local = self.dir.join(local_file_name(&head.name));
        let size = std::fs::metadata(&partial)?.len();
        std::fs::File::open(&partial)?.sync_all()?;
        std::fs::rename(&partial, &local)?;
        (self.written.lock().unwrap_or_else(PoisonError::into_inner)).push(head.name.clone());
        Ok(size)
    }

    /// A download failed: its partial file goes.
    pub fn discard(&self, name: &str) {
        if let Some((partial, bar)) = self.take(name) {
            bar.finish_and_clear();
            let _ = std::fs::remove_file(partial);
        }
    }

    /// Records the files this run wrote, at the `updatedDate`s of the session's last
    /// file list, so that the next run skips them while they are unchanged.
    pub fn save(&self, list: &[digime_protocol::read::FileListEntry]) -> Result<(), Failure> {
        let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let written: HashSet<&str> = written.iter().map(String::as_str).collect();
        let mut record = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        for entry in list.iter().filter(|e| written.contains(e.name.as_str())) {
            record.files.insert(
                entry.name.clone(),
                Entry {
                    local: local_file_name(&entry.name),
                    updated_date: entry.updated_date,
                },
            );
        }
        let json =
            serde_json::to_vec_pretty(&*record).map_err(|e| Failure::local(e.to_string()))?;
        let path = self.dir.join(RECORD);
        crate::tokens::write_private(&path, &json)
            .map_err(|e| Failure::local(format!("{}: {e}", path.display())))
    }
}

/// A download's writer: a buffered file that moves the file's bar.
pub struct Counting {
    file: BufWriter<std::fs::File>,
    bar: ProgressBar,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_download_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        // A file of the user's that looks like a temporary one is left alone.
        let theirs = dir.path().join("x.json~partial");
        std::fs::write(&theirs, b"theirs").unwrap();
        let r = write_whole(&path, |sink| {
            sink.write_all(b"half").unwrap();
            Err(digime_protocol::Error::InvalidInput("cut".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read(&theirs).unwrap(), b"theirs");
        let n = write_whole(&path, |sink| {
            sink.write_all(b"whole")
                .map_err(|e| digime_protocol::Error::InvalidInput(e.to_string()))
        })
        .unwrap();
        assert_eq!((n, std::fs::read(&path).unwrap()), (5, b"whole".to_vec()));
    }

    #[test]
    fn a_folder_drops_stale_partials_and_skips_only_files_still_there() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a~3.partial"), b"stale").unwrap();
        std::fs::write(dir.path().join("keep.json"), b"mine").unwrap();
        std::fs::write(dir.path().join("notes.partial"), b"mine").unwrap();
        let folder = Folder::open(dir.path()).unwrap();
        assert!(!dir.path().join("a~3.partial").exists());
        assert!(dir.path().join("keep.json").exists());
        assert!(dir.path().join("notes.partial").exists());
        let head = |name: &str| FileHead {
            name: name.into(),
            metadata: serde_json::from_str(r#"{"mimetype":"a/b","accounts":[]}"#).unwrap(),
            compression: Default::default(),
            last_modified: None,
        };
        for name in ["a/b", "c"] {
            let mut w = folder.partial(name, ProgressBar::hidden()).unwrap();
            w.write_all(name.as_bytes()).unwrap();
            w.flush().unwrap();
            folder.complete(&head(name)).unwrap();
        }
        let entry = |name: &str, d| digime_protocol::read::FileListEntry {
            updated_date: d,
            ..serde_json::from_value(serde_json::json!({"name": name, "updatedDate": 0})).unwrap()
        };
        folder.save(&[entry("a/b", 10), entry("c", 20)]).unwrap();
        std::fs::remove_file(dir.path().join("c")).unwrap();
        let again = Folder::open(dir.path()).unwrap();
        assert_eq!(again.already_read(), [("a/b".to_string(), 10)].into());
        assert_eq!(
            std::fs::read(dir.path().join(local_file_name("a/b"))).unwrap(),
            b"a/b"
        );
    }
}
