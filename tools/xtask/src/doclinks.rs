//! A host test that keeps the prose's links true: every relative link in `README.md` and
//! `docs/*.md` names a file or folder that exists, and every `#anchor` names a heading of
//! the page it points into, by GitHub's rule for heading ids (lower case; letters, digits,
//! `-` and `_` kept, spaces to `-`, the rest dropped; a repeated id gets `-1`, `-2`, ...).

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::{Path, PathBuf};

    use crate::util;

    /// The pages checked: the README and every Markdown file in docs/.
    fn pages() -> Vec<PathBuf> {
        let docs = std::fs::read_dir(util::root().join("docs")).unwrap().flatten().map(|e| e.path());
        let mut pages: Vec<PathBuf> = docs.filter(|p| p.extension().is_some_and(|x| x == "md")).collect();
        pages.push(util::root().join("README.md"));
        pages
    }

    /// The page's lines outside fenced code blocks, numbered from 1.
    fn prose(text: &str) -> impl Iterator<Item = (usize, &str)> {
        let mut fenced = false;
        text.lines().enumerate().filter_map(move |(i, line)| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return None;
            }
            (!fenced).then_some((i + 1, line))
        })
    }

    /// GitHub's id for a heading's text.
    fn slug(heading: &str) -> String {
        let text = heading.trim().to_lowercase();
        text.chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect()
    }

    /// The ids of a page's headings.
    fn anchors(text: &str) -> HashSet<String> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut ids = HashSet::new();
        for (_, line) in prose(text) {
            let Some(heading) = line.strip_prefix('#') else { continue };
            let base = slug(heading.trim_start_matches('#'));
            let n = seen.entry(base.clone()).or_default();
            ids.insert(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
            *n += 1;
        }
        ids
    }

    /// The relative link targets of a page (`[text](target)`, not inside a code span), each
    /// with its line.
    fn links(text: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        for (n, line) in prose(text) {
            // Code spans hold examples, not links: drop them first.
            let outside: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
            for part in outside.split("](").skip(1) {
                let target = part.split(')').next().unwrap_or("").split_whitespace().next().unwrap_or("");
                let external = ["http://", "https://", "mailto:"].iter().any(|s| target.starts_with(s));
                if !target.is_empty() && !external {
                    found.push((n, target.to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn slugs_follow_githubs_rule() {
        assert_eq!(
            slug(" The PCT round trip at 237, and why 150 is out of reach (issue 19's `event` round)"),
            "the-pct-round-trip-at-237-and-why-150-is-out-of-reach-issue-19s-event-round"
        );
        assert_eq!(slug(" fork + exit_wait"), "fork--exit_wait");
        let ids = anchors("# A\n## A\n```\n# not a heading\n```\n### b c\n");
        assert_eq!(ids, HashSet::from(["a".into(), "a-1".into(), "b-c".into()]));
        let l = links("see [x](a.md#b) and [y](https://e.org) `[z](no.md)`\n```\n[w](no.md)\n```\n");
        assert_eq!(l, vec![(1, "a.md#b".to_string())]);
    }

    #[test]
    fn every_relative_link_in_the_docs_reaches_its_file_and_heading() {
        let pages = pages();
        assert!(pages.len() > 10, "found only {} pages: wrong directory?", pages.len());
        let mut broken = Vec::new();
        for page in &pages {
            let text = std::fs::read_to_string(page).unwrap();
            let dir = page.parent().unwrap();
            for (n, target) in links(&text) {
                let (file, anchor) = target.split_once('#').unwrap_or((&target, ""));
                let to: PathBuf = if file.is_empty() { page.clone() } else { dir.join(file) };
                let name =
                    format!("{}:{n}: {target}", page.strip_prefix(util::root()).unwrap_or(page).display());
                if !to.exists() {
                    broken.push(format!("{name} (no such file)"));
                } else if !anchor.is_empty() && !is_page_with(&to, anchor) {
                    broken.push(format!("{name} (no such heading)"));
                }
            }
        }
        assert!(broken.is_empty(), "broken links in the docs:\n  {}", broken.join("\n  "));
    }

    /// Whether `to` is a Markdown page with a heading whose id is `anchor`.
    fn is_page_with(to: &Path, anchor: &str) -> bool {
        let md = to.extension().is_some_and(|x| x == "md");
        md && anchors(&std::fs::read_to_string(to).unwrap()).contains(anchor)
    }
}
