//! The lint policy: which crates clippy checks for the board, and host tests that keep every
//! workspace member under `[workspace.lints]` (docs/conventions.md says what it holds).

/// The crates `lint::clippy_target` checks as built for the board: every workspace member
/// except the host-only tools.
pub const TARGET_CRATES: &[&str] = &[
    "exo-abi",
    "exo-bsp",
    "exo-chainload",
    "exo-chainloader",
    "exo-format",
    "exo-kernel",
    "exo-libos",
    "exo-block",
    "exo-fat",
    "exo-lfs",
    "exo-logfs",
    "exo-net",
    "exo-apps",
    "exo-httpd",
    "exo-shell",
    "exo-init",
    "exo-fatnote",
    "exo-lognote",
];

/// Workspace members that build only for the host (clippy checks them there).
#[cfg(test)]
const HOST_ONLY: &[&str] = &["xtask", "exo-lfs-tool"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util;

    /// The quoted strings of the `members = [...]` list in the root Cargo.toml.
    fn members() -> Vec<String> {
        let root = std::fs::read_to_string(util::root().join("Cargo.toml")).unwrap();
        let list = root.split("members = [").nth(1).unwrap().split(']').next().unwrap();
        list.split('"').skip(1).step_by(2).map(str::to_string).collect()
    }

    fn manifest(member: &str) -> String {
        std::fs::read_to_string(util::root().join(member).join("Cargo.toml")).unwrap()
    }

    /// The `name = "..."` of a member's `[package]`.
    fn package_name(manifest: &str) -> String {
        let line = manifest.lines().find(|l| l.starts_with("name = ")).unwrap();
        line.trim_start_matches("name = ").trim_matches('"').to_string()
    }

    #[test]
    fn workspace_denies_the_unsafe_and_dependency_lints() {
        let root = std::fs::read_to_string(util::root().join("Cargo.toml")).unwrap();
        for (table, lint) in [
            ("rust", "unsafe_op_in_unsafe_fn"),
            ("rust", "unused_crate_dependencies"),
            ("clippy", "undocumented_unsafe_blocks"),
            ("clippy", "missing_safety_doc"),
            ("clippy", "multiple_unsafe_ops_per_block"),
        ] {
            let body = root.split(&format!("[workspace.lints.{table}]\n")).nth(1).unwrap_or("");
            let body = body.split("\n[").next().unwrap();
            assert!(
                body.contains(&format!("{lint} = \"deny\"")),
                "{lint} is not denied in [workspace.lints.{table}]"
            );
        }
    }

    #[test]
    fn every_member_takes_the_workspace_lints() {
        let members = members();
        assert!(members.len() >= 12, "members: {members:?}");
        for m in members {
            assert!(
                manifest(&m).contains("\n[lints]\nworkspace = true\n"),
                "{m}/Cargo.toml lacks `[lints] workspace = true`"
            );
        }
    }

    #[test]
    fn clippy_checks_every_board_crate() {
        let mut board: Vec<String> = members()
            .iter()
            .map(|m| package_name(&manifest(m)))
            .filter(|n| !HOST_ONLY.contains(&n.as_str()))
            .collect();
        let mut listed: Vec<String> = TARGET_CRATES.iter().map(|s| s.to_string()).collect();
        board.sort();
        listed.sort();
        assert_eq!(board, listed, "lints::TARGET_CRATES must name every member that builds for the board");
    }

    /// Whether any source file under `dir` uses `unsafe` outside comments.
    fn uses_unsafe(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).unwrap().any(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                return uses_unsafe(&p);
            }
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            p.extension().is_some_and(|x| x == "rs")
                && text.lines().any(|l| !l.trim_start().starts_with("//") && has_unsafe_keyword(l))
        })
    }

    /// `unsafe` as a word (`unsafe {`, `unsafe fn`, `#[unsafe(...)]`), not in `unsafe_code`.
    fn has_unsafe_keyword(line: &str) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        line.match_indices("unsafe").any(|(i, _)| {
            !word(line[..i].chars().next_back()) && !word(line[i + "unsafe".len()..].chars().next())
        })
    }

    #[test]
    fn unsafe_keyword_is_told_from_lint_names() {
        assert!(has_unsafe_keyword("    let x = unsafe { f() };"));
        assert!(has_unsafe_keyword("#[unsafe(no_mangle)]"));
        assert!(!has_unsafe_keyword("#![forbid(unsafe_code)]"));
        assert!(!has_unsafe_keyword("#![allow(clippy::multiple_unsafe_ops_per_block)]"));
    }

    #[test]
    fn crates_without_unsafe_forbid_it() {
        for m in members() {
            let src = util::root().join(&m).join("src");
            if uses_unsafe(&src) {
                continue;
            }
            let crate_root = ["lib.rs", "main.rs"].iter().map(|f| src.join(f)).find(|p| p.exists()).unwrap();
            let text = std::fs::read_to_string(&crate_root).unwrap();
            assert!(
                text.contains("#![forbid(unsafe_code)]"),
                "{m} has no unsafe code: forbid it in {crate_root:?}"
            );
        }
    }
}

/// The kernel's size budget: `kernel/src` in lines of code (not blank, not a comment),
/// without its tests (files named `*tests*`: unit tests, and the test image's self-tests).
/// The ABI and format crates are outside `kernel/src` and not counted.
#[cfg(test)]
mod budget {
    /// The aim is 3,000 (docs/conventions.md), and since issue 19's `diet` round (2,999
    /// lines) the ceiling is the aim itself: a line added must be paid for.
    const KERNEL_LINES: usize = 3000;

    fn code_lines(dir: &std::path::Path, total: &mut usize) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                code_lines(&path, total);
            } else if name.ends_with(".rs") && !name.contains("tests") {
                let text = std::fs::read_to_string(&path).unwrap();
                *total +=
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).count();
            }
        }
    }

    #[test]
    fn kernel_stays_under_its_line_budget() {
        let mut total = 0;
        code_lines(&crate::util::root().join("kernel/src"), &mut total);
        assert!(total > 1000, "counted only {total} lines: wrong directory?");
        println!("kernel/src: {total} lines of code (aim 3,000, ceiling {KERNEL_LINES})");
        assert!(
            total < KERNEL_LINES,
            "kernel/src has {total} lines of code, over the {KERNEL_LINES}-line budget: \
             ask whether a libOS or bsp could do it"
        );
    }
}
