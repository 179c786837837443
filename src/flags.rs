//! Message flags as the sync planner and the state database write them: the Maildir letters of
//! the five system flags both sides share (D F R S T), then keywords by name, space-separated
//! (`"FS $Junk work"`). Conversions from and to IMAP flag lists live here too; conversions from
//! and to Maildir file names need the folder's keyword table (`maildir::keywords`).

use std::fmt;

/// IMAP system flags and their Maildir letters.
pub const SYSTEM: &[(&str, char)] = &[
    ("\\Draft", 'D'),
    ("\\Flagged", 'F'),
    ("\\Answered", 'R'),
    ("\\Seen", 'S'),
    ("\\Deleted", 'T'),
];

/// One flag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    /// A system flag, by its Maildir letter.
    System(char),
    /// A keyword, by name.
    Keyword(String),
}

/// A set of flags: the system flags as bits (in the order of [`SYSTEM`]), the keywords sorted
/// (almost every message has none, and then the set holds no allocation).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlagSet {
    system: u8,
    keywords: Box<[Box<str>]>,
}

/// The bit of a system flag's letter.
fn bit(letter: char) -> Option<u8> {
    SYSTEM
        .iter()
        .position(|&(_, l)| l == letter)
        .map(|i| 1 << i)
}

/// Whether a keyword can be stored and sent as an IMAP atom (no specials, no controls).
fn valid_keyword(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with('\\')
        && k.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b']')
        })
}

impl FlagSet {
    fn with_keywords(system: u8, keywords: impl IntoIterator<Item = Box<str>>) -> FlagSet {
        let mut keywords: Vec<Box<str>> = keywords.into_iter().collect();
        keywords.sort_unstable();
        keywords.dedup();
        FlagSet {
            system,
            keywords: keywords.into_boxed_slice(),
        }
    }

    /// Parses the written form; unknown letters and invalid keywords are dropped.
    pub fn parse(text: &str) -> FlagSet {
        let mut words = text.split(' ');
        let letters = words.next().unwrap_or_default();
        let system = letters.chars().filter_map(bit).fold(0, |a, b| a | b);
        FlagSet::with_keywords(system, words.filter(|w| valid_keyword(w)).map(Box::from))
    }

    /// The flags of an IMAP flag list; `\Recent` and other system flags without a Maildir
    /// letter are left out.
    pub fn from_imap(flags: &[String]) -> FlagSet {
        let mut system = 0;
        let mut keywords = Vec::new();
        for f in flags {
            if let Some(&(_, l)) = SYSTEM.iter().find(|(name, _)| f.eq_ignore_ascii_case(name)) {
                system |= bit(l).unwrap_or(0);
            } else if valid_keyword(f) {
                keywords.push(Box::from(f.as_str()));
            }
        }
        FlagSet::with_keywords(system, keywords)
    }

    /// The IMAP flag list, space-separated (for commands that set flags).
    pub fn to_imap(&self) -> String {
        let system = SYSTEM
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.system & (1 << i) != 0)
            .map(|(_, &(name, _))| name);
        system.chain(self.keywords()).collect::<Vec<_>>().join(" ")
    }

    /// Whether the set holds a flag.
    pub fn contains(&self, flag: &Flag) -> bool {
        match flag {
            Flag::System(l) => self.has(*l),
            Flag::Keyword(k) => self.keywords.binary_search_by(|x| (**x).cmp(k)).is_ok(),
        }
    }

    /// Whether the set holds a system flag.
    pub fn has(&self, letter: char) -> bool {
        bit(letter).is_some_and(|b| self.system & b != 0)
    }

    /// Whether the set holds no keywords (only system flags, or nothing).
    pub fn plain(&self) -> bool {
        self.keywords.is_empty()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.system == 0 && self.keywords.is_empty()
    }

    /// Adds a flag.
    pub fn insert(&mut self, flag: Flag) {
        match flag {
            Flag::System(l) => self.system |= bit(l).unwrap_or(0),
            Flag::Keyword(k) if valid_keyword(&k) && !self.contains(&Flag::Keyword(k.clone())) => {
                let mut all = std::mem::take(&mut self.keywords).into_vec();
                all.push(k.into_boxed_str());
                *self = FlagSet::with_keywords(self.system, all);
            }
            Flag::Keyword(_) => {}
        }
    }

    /// The flags in either set.
    pub fn union(&self, other: &FlagSet) -> FlagSet {
        let keywords = self.keywords.iter().chain(other.keywords.iter()).cloned();
        FlagSet::with_keywords(self.system | other.system, keywords)
    }

    /// The flags of this set that `other` does not hold.
    pub fn minus(&self, other: &FlagSet) -> FlagSet {
        let keywords = self
            .keywords
            .iter()
            .filter(|k| other.keywords.binary_search(k).is_err())
            .cloned();
        FlagSet::with_keywords(self.system & !other.system, keywords)
    }

    /// The set with only the keywords `allowed` names (system flags all kept).
    pub fn only_keywords(&self, allowed: &[String]) -> FlagSet {
        let keywords = self
            .keywords
            .iter()
            .filter(|k| allowed.iter().any(|a| **a == ***k));
        FlagSet::with_keywords(self.system, keywords.cloned())
    }

    /// The flags, in order (system flags, then keywords).
    pub fn iter(&self) -> impl Iterator<Item = Flag> + '_ {
        let system = SYSTEM
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.system & (1 << i) != 0)
            .map(|(_, &(_, l))| Flag::System(l));
        system.chain(self.keywords().map(|k| Flag::Keyword(k.to_string())))
    }

    /// The keywords, in order.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.keywords.iter().map(|k| &**k)
    }
}

/// Merges flag by flag against the last synced set: a flag changed on one side takes that
/// side's value; changed on both, both hold the same. With no synced set (a first pairing),
/// the union.
pub fn merge(base: Option<&FlagSet>, far: &FlagSet, near: &FlagSet) -> FlagSet {
    let Some(base) = base else {
        return far.union(near);
    };
    // Per system flag: far's value where far changed, else near's.
    let far_changed = far.system ^ base.system;
    let system = (far.system & far_changed) | (near.system & !far_changed);
    let every = far.keywords().chain(near.keywords()).chain(base.keywords());
    let keywords = every.filter(|k| {
        let held = |s: &FlagSet| s.keywords.binary_search_by(|x| (**x).cmp(k)).is_ok();
        if held(far) != held(base) {
            held(far)
        } else {
            held(near)
        }
    });
    FlagSet::with_keywords(system, keywords.map(Box::from))
}

impl AsRef<FlagSet> for FlagSet {
    fn as_ref(&self) -> &FlagSet {
        self
    }
}

impl From<&str> for FlagSet {
    fn from(text: &str) -> FlagSet {
        FlagSet::parse(text)
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> FlagSet {
        let mut system = 0;
        let mut keywords = Vec::new();
        for f in iter {
            match f {
                Flag::System(l) => system |= bit(l).unwrap_or(0),
                Flag::Keyword(k) if valid_keyword(&k) => keywords.push(k.into_boxed_str()),
                Flag::Keyword(_) => {}
            }
        }
        FlagSet::with_keywords(system, keywords)
    }
}

impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(_, l)) in SYSTEM.iter().enumerate() {
            if self.system & (1 << i) != 0 {
                write!(f, "{l}")?;
            }
        }
        for k in self.keywords() {
            write!(f, " {k}")?;
        }
        Ok(())
    }
}

/// Written as the text form ("FS $Junk"), as state keeps it.
impl serde::Serialize for FlagSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_form_round_trips() {
        for text in ["", "S", "DFRST", "FS $Junk work", " $Label1"] {
            assert_eq!(FlagSet::parse(text).to_string(), text, "{text:?}");
        }
        // Not written by us, but read safely: order, duplicates, stray letters, bad keywords.
        assert_eq!(FlagSet::parse("SFSP b a a").to_string(), "FS a b");
        assert_eq!(FlagSet::parse("S  x(y \\Seen").to_string(), "S");
    }

    #[test]
    fn imap_lists_map_both_ways() {
        let imap: Vec<String> = ["\\Seen", "\\flagged", "$Junk", "\\Recent", "work"]
            .map(String::from)
            .to_vec();
        let set = FlagSet::from_imap(&imap);
        assert_eq!(set.to_string(), "FS $Junk work");
        assert_eq!(set.to_imap(), "\\Flagged \\Seen $Junk work");
        assert_eq!(
            FlagSet::parse("DFRST").to_imap(),
            "\\Draft \\Flagged \\Answered \\Seen \\Deleted"
        );
        assert_eq!(FlagSet::parse("").to_imap(), "");
    }

    proptest::proptest! {
        /// Any text reads as a flag set without panicking, and its written form reads back
        /// as the same set.
        #[test]
        fn parse_is_total_and_written_form_is_stable(text in "(?s).{0,80}") {
            let set = FlagSet::parse(&text);
            let written = set.to_string();
            proptest::prop_assert_eq!(FlagSet::parse(&written), set);
        }

        /// The merge is the per-flag rule: a flag takes far's value where far changed it since
        /// the base, else near's; with no base, either side's.
        #[test]
        fn merge_is_the_per_flag_rule(
            base in "[DFRST]{0,5}( [a-c]){0,3}",
            far in "[DFRST]{0,5}( [a-c]){0,3}",
            near in "[DFRST]{0,5}( [a-c]){0,3}",
            first: bool,
        ) {
            let (b, f, n) = (FlagSet::parse(&base), FlagSet::parse(&far), FlagSet::parse(&near));
            let merged = merge((!first).then_some(&b), &f, &n);
            let every = ["D", "F", "R", "S", "T"]
                .map(|l| Flag::System(l.chars().next().unwrap()))
                .into_iter()
                .chain(["a", "b", "c"].map(|k| Flag::Keyword(k.into())));
            for flag in every {
                let want = if first {
                    f.contains(&flag) || n.contains(&flag)
                } else if f.contains(&flag) != b.contains(&flag) {
                    f.contains(&flag)
                } else {
                    n.contains(&flag)
                };
                proptest::prop_assert_eq!(merged.contains(&flag), want, "{:?}", flag);
            }
        }

        /// Any IMAP flag list maps to a set whose IMAP form maps back to it.
        #[test]
        fn imap_lists_round_trip(flags in proptest::collection::vec("\\\\?[!-~]{0,10}", 0..8)) {
            let set = FlagSet::from_imap(&flags);
            let back: Vec<String> = set.to_imap().split(' ').filter(|s| !s.is_empty()).map(String::from).collect();
            proptest::prop_assert_eq!(FlagSet::from_imap(&back), set);
        }
    }
}
