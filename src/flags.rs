//! Message flags as the sync planner and the state database write them: the Maildir letters of
//! the five system flags both sides share (D F R S T), then keywords by name, space-separated
//! (`"FS $Junk work"`). Conversions from and to IMAP flag lists live here too; conversions from
//! and to Maildir file names need the folder's keyword table (`maildir::keywords`).

use std::collections::BTreeSet;
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

/// A set of flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagSet(BTreeSet<Flag>);

fn is_system_letter(c: char) -> bool {
    SYSTEM.iter().any(|&(_, l)| l == c)
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
    /// Parses the written form; unknown letters and invalid keywords are dropped.
    pub fn parse(text: &str) -> FlagSet {
        let mut words = text.split(' ');
        let letters = words.next().unwrap_or_default();
        let mut set: BTreeSet<Flag> = letters
            .chars()
            .filter(|&c| is_system_letter(c))
            .map(Flag::System)
            .collect();
        set.extend(
            words
                .filter(|w| valid_keyword(w))
                .map(|w| Flag::Keyword(w.to_string())),
        );
        FlagSet(set)
    }

    /// The flags of an IMAP flag list; `\Recent` and other system flags without a Maildir
    /// letter are left out.
    pub fn from_imap(flags: &[String]) -> FlagSet {
        let mut set = BTreeSet::new();
        for f in flags {
            if let Some(&(_, l)) = SYSTEM.iter().find(|(name, _)| f.eq_ignore_ascii_case(name)) {
                set.insert(Flag::System(l));
            } else if valid_keyword(f) {
                set.insert(Flag::Keyword(f.clone()));
            }
        }
        FlagSet(set)
    }

    /// The IMAP flag list, space-separated (for commands that set flags).
    pub fn to_imap(&self) -> String {
        self.0
            .iter()
            .map(|f| match f {
                Flag::System(l) => SYSTEM
                    .iter()
                    .find(|(_, c)| c == l)
                    .map_or("", |(name, _)| name),
                Flag::Keyword(k) => k.as_str(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether the set holds a flag.
    pub fn contains(&self, flag: &Flag) -> bool {
        self.0.contains(flag)
    }

    /// Whether the set holds a system flag.
    pub fn has(&self, letter: char) -> bool {
        self.0.contains(&Flag::System(letter))
    }

    /// Adds a flag.
    pub fn insert(&mut self, flag: Flag) {
        self.0.insert(flag);
    }

    /// The flags, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Flag> {
        self.0.iter()
    }

    /// The keywords, in order.
    pub fn keywords(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|f| match f {
            Flag::Keyword(k) => Some(k.as_str()),
            Flag::System(_) => None,
        })
    }
}

impl FromIterator<Flag> for FlagSet {
    fn from_iter<I: IntoIterator<Item = Flag>>(iter: I) -> FlagSet {
        FlagSet(iter.into_iter().collect())
    }
}

impl fmt::Display for FlagSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for flag in &self.0 {
            if let Flag::System(l) = flag {
                write!(f, "{l}")?;
            }
        }
        for k in self.keywords() {
            write!(f, " {k}")?;
        }
        Ok(())
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

        /// Any IMAP flag list maps to a set whose IMAP form maps back to it.
        #[test]
        fn imap_lists_round_trip(flags in proptest::collection::vec("\\\\?[!-~]{0,10}", 0..8)) {
            let set = FlagSet::from_imap(&flags);
            let back: Vec<String> = set.to_imap().split(' ').filter(|s| !s.is_empty()).map(String::from).collect();
            proptest::prop_assert_eq!(FlagSet::from_imap(&back), set);
        }
    }
}
