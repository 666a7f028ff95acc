//! A program's arguments: one string (what `spawn` and `exec` pass), split into words at
//! whitespace, where "double quotes" keep a word's spaces. The shell splits what is typed
//! by the same rule, and [`join`] writes words back so that [`split`] gives them again.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

/// Splits `line` into words: whitespace separates them, except inside "double quotes",
/// which are dropped (`"a b"c` is the one word `a bc`; `""` is an empty word).
pub fn split(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut any) = (false, false);
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(core::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// Joins `words` into one line that [`split`] splits into the same words: a word that is
/// empty or holds whitespace is quoted. (No word can hold a `"`: `split` never gives one.)
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    let mut out = String::new();
    for w in words.iter().map(AsRef::as_ref) {
        if !out.is_empty() {
            out.push(' ');
        }
        if w.is_empty() || w.contains(char::is_whitespace) {
            out.push('"');
            out.push_str(w);
            out.push('"');
        } else {
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_keep_spaces_and_are_dropped() {
        assert_eq!(split("  wc  \"a b\"  c\td\n"), ["wc", "a b", "c", "d"]);
        assert_eq!(split("x\"y z\"w \"\""), ["xy zw", ""]);
        assert_eq!(split("   "), Vec::<String>::new());
        assert_eq!(split("\"unclosed two"), ["unclosed two"]);
    }

    #[test]
    fn join_gives_back_what_split_took() {
        for line in ["a", "a b", "\"a b\" c", "\"\" x", "\"tab\there\"", "/fat/My Dir/f.txt"] {
            let words = split(line);
            assert_eq!(split(&join(&words)), words, "{line:?} joined as {:?}", join(&words));
        }
        assert_eq!(join(&["cwd=/fat/My Dir", "-n", "3"]), "\"cwd=/fat/My Dir\" -n 3");
    }
}
