//! Keywords in a Maildir, by Dovecot's convention (the one Maildir readers share): the
//! lower-case letters `a`..`z` in a file name's flags stand for the keywords listed in the
//! folder's `dovecot-keywords` file, one `INDEX NAME` line each (`0` is `a`). So a folder holds
//! at most 26 keywords; others cannot be stored there and are not carried.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{Result, io_err, sync_dir};
use crate::flags::{Flag, FlagSet, SYSTEM};

/// The file, in each folder.
pub const FILE: &str = "dovecot-keywords";
const SLOTS: usize = 26;

/// A folder's keyword table.
#[derive(Debug, Clone)]
pub struct Keywords {
    folder: PathBuf,
    names: [Option<String>; SLOTS],
    dirty: bool,
}

impl Keywords {
    /// Reads the table of the folder at `folder` (none yet: empty). Lines that are not
    /// `INDEX NAME` with an index below 26 are ignored.
    pub fn load(folder: &Path) -> Result<Keywords> {
        let mut names: [Option<String>; SLOTS] = Default::default();
        let path = folder.join(FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                for line in String::from_utf8_lossy(&bytes).lines() {
                    let Some((index, name)) = line.split_once(' ') else {
                        continue;
                    };
                    if let Ok(i) = index.parse::<usize>()
                        && i < SLOTS
                        && !name.is_empty()
                    {
                        names[i] = Some(name.to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("read", &path)(e)),
        }
        Ok(Keywords {
            folder: folder.to_path_buf(),
            names,
            dirty: false,
        })
    }

    fn letter_of(&self, name: &str) -> Option<char> {
        self.names
            .iter()
            .position(|n| n.as_deref() == Some(name))
            .map(|i| (b'a' + i as u8) as char)
    }

    fn name_of(&self, letter: char) -> Option<&str> {
        let i = (letter as u32).checked_sub('a' as u32)? as usize;
        self.names.get(i)?.as_deref()
    }

    /// Whether a file's flag letter stands for a flag the other side knows.
    fn expresses(&self, c: char) -> bool {
        SYSTEM.iter().any(|&(_, l)| l == c) || self.name_of(c).is_some()
    }

    /// The flags a Maildir file's letters stand for (lower-case letters the table does not
    /// name, and letters such as `P`, are not flags the other side knows).
    pub fn flags(&self, letters: &str) -> FlagSet {
        letters
            .chars()
            .filter_map(|c| {
                if SYSTEM.iter().any(|&(_, l)| l == c) {
                    Some(Flag::System(c))
                } else if c.is_ascii_lowercase() {
                    self.name_of(c).map(|n| Flag::Keyword(n.to_string()))
                } else {
                    None
                }
            })
            .collect()
    }

    /// Gives every keyword of `set` a letter where there is room; returns the keywords that
    /// got none (the table is full), which cannot be stored in this folder.
    pub fn admit(&mut self, set: &FlagSet) -> Vec<String> {
        let mut refused = Vec::new();
        for k in set.keywords() {
            if self.letter_of(k).is_some() {
                continue;
            }
            match self.names.iter().position(Option::is_none) {
                Some(free) => {
                    self.names[free] = Some(k.to_string());
                    self.dirty = true;
                }
                None => refused.push(k.to_string()),
            }
        }
        refused
    }

    /// `set` less the keywords that have no letter here.
    pub fn storable(&self, set: &FlagSet) -> FlagSet {
        set.iter()
            .filter(|f| match f {
                Flag::Keyword(k) => self.letter_of(k).is_some(),
                Flag::System(_) => true,
            })
            .collect()
    }

    /// A file's new flag letters: `current` with the flags this table can express replaced by
    /// `set` (letters it cannot express, such as `P` or unnamed keywords, are kept).
    pub fn letters(&self, current: &str, set: &FlagSet) -> String {
        let mut letters: Vec<char> = current.chars().filter(|&c| !self.expresses(c)).collect();
        for f in set.iter() {
            match f {
                Flag::System(l) => letters.push(l),
                Flag::Keyword(k) => letters.extend(self.letter_of(&k)),
            }
        }
        super::normalize_flags(&letters.into_iter().collect::<String>())
    }

    /// Writes the table if letters were given out since it was read: written whole to a
    /// temporary file, synced, renamed over the old one, directory synced (before any message
    /// file uses a new letter).
    pub fn save(&mut self) -> Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let text: String = self
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| format!("{i} {n}\n")))
            .collect();
        let path = self.folder.join(FILE);
        let tmp = self.folder.join(format!("{FILE}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        write().map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename", &path))?;
        sync_dir(&self.folder)?;
        self.dirty = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_name_keywords_and_the_table_persists() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "0 $Junk\n1 work\nnonsense\n30 far\n").unwrap();
        let mut k = Keywords::load(dir.path()).unwrap();
        assert_eq!(k.flags("Sabz P").to_string(), "S $Junk work");
        let set = FlagSet::parse("F $Junk later");
        assert!(k.admit(&set).is_empty());
        // Unnamed `z` and `P` stay; `a` (now not wanted) goes; `later` gets the first free slot.
        assert_eq!(k.letters("PSaz", &set), "FPacz");
        k.save().unwrap();
        let again = Keywords::load(dir.path()).unwrap();
        assert_eq!(again.flags("c").to_string(), " later");
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "0 $Junk\n1 work\n2 later\n"
        );
    }

    #[test]
    fn a_full_table_refuses_and_storable_drops() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Keywords::load(dir.path()).unwrap();
        let many: FlagSet = (0..28).map(|i| Flag::Keyword(format!("k{i:02}"))).collect();
        assert_eq!(k.admit(&many), vec!["k26".to_string(), "k27".to_string()]);
        assert_eq!(k.storable(&many).keywords().count(), 26);
        assert_eq!(k.letters("", &many).len(), 26);
    }

    proptest::proptest! {
        /// A keywords file with anything in it loads without panicking, and the letters it
        /// gives out name the keywords they were given for.
        #[test]
        fn any_table_loads_and_letters_round_trip(
            table in "(?s).{0,200}",
            names in proptest::collection::vec("[a-zA-Z$][a-zA-Z0-9_]{0,8}", 0..30),
        ) {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(FILE), table).unwrap();
            let mut k = Keywords::load(dir.path()).unwrap();
            let set: FlagSet = names.iter().map(|n| Flag::Keyword(n.clone())).collect();
            k.admit(&set);
            let stored = k.storable(&set);
            let letters = k.letters("", &stored);
            proptest::prop_assert_eq!(k.flags(&letters), stored);
        }
    }
}
