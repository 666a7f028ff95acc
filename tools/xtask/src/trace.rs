//! Turning QEMU's execution log into instructions per call stack, for `cargo xtask profile`.
//!
//! QEMU runs with `-d in_asm,exec,nochain`: every translation block (TB) it translates is
//! logged once with its instructions (`IN:` and one line per instruction), and every time a
//! TB runs, a `Trace` line names it by its host address and guest pc. `nochain` makes QEMU
//! log every execution, not only the first of a chain, so the sum over `Trace` lines of each
//! TB's instruction count is exactly what the guest executed (a TB left early by a
//! synchronous fault counts in full: a few instructions per fault).
//!
//! Each TB is attributed to an image: the kernel (linked high, or running at its load
//! address before the MMU is on) or one of the programs. The programs are all linked at the
//! same address, so a TB is matched to the program whose code holds the same instruction
//! words there; when several do, the one that ran last wins. Call stacks are rebuilt from
//! how each TB ends: `bl`/`blr` pushes the next TB's function, `ret` pops, and an exception
//! from EL0 stacks the kernel on top of the program's stack until `eret`.

use std::collections::HashMap;

use crate::symbols::Symbols;

/// One program or the kernel: its symbols and its loaded bytes.
pub struct Image {
    pub name: String,
    pub syms: Symbols,
    /// (address, bytes) of each loadable segment.
    pub segs: Vec<(u64, Vec<u8>)>,
}

impl Image {
    pub fn load(name: &str, elf: &std::path::Path) -> Result<Image, String> {
        use object::{Object, ObjectSegment};
        let data = std::fs::read(elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let file = object::File::parse(&*data).map_err(|e| format!("{}: {e}", elf.display()))?;
        let segs = file
            .segments()
            .filter_map(|s| Some((s.address(), s.data().ok()?.to_vec())))
            .filter(|(_, d)| !d.is_empty())
            .collect();
        Ok(Image { name: name.into(), syms: Symbols::load(elf)?, segs })
    }

    /// Whether the image holds `words` at `addr`.
    fn holds(&self, addr: u64, words: &[u32]) -> bool {
        self.segs.iter().any(|(base, bytes)| {
            let Some(off) = addr.checked_sub(*base).map(|o| o as usize) else { return false };
            off + 4 * words.len() <= bytes.len()
                && words.iter().enumerate().all(|(i, w)| {
                    let at = off + 4 * i;
                    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) == *w
                })
        })
    }
}

/// How a TB ends, which tells what the next TB is to the call stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Call,
    Ret,
    Eret,
    Other,
}

fn end_of(mnemonic: &str) -> End {
    match mnemonic {
        "bl" | "blr" | "blraa" | "blraaz" | "blrab" | "blrabz" => End::Call,
        "ret" | "retaa" | "retab" => End::Ret,
        "eret" | "eretaa" | "eretab" => End::Eret,
        _ => End::Other,
    }
}

/// A translated TB.
#[derive(Clone, Copy)]
struct Tb {
    insns: u64,
    /// Interned frame name of its first instruction's function.
    frame: u32,
    /// Index of its image in `images`, or `None` for code outside every image.
    image: Option<usize>,
    kernel: bool,
    end: End,
    /// Its index in `Profiler::annotated`, if its function is annotated (else `u32::MAX`).
    annotated: u32,
}

/// Builds the profile from the log, line by line.
pub struct Profiler {
    images: Vec<Image>,
    /// Which of `images` is the kernel.
    kernel: usize,
    /// Where the kernel image was loaded (it runs there until the MMU is on).
    kernel_load: u64,
    kernel_base: u64,
    kernel_size: u64,
    names: Vec<String>,
    name_ids: HashMap<String, u32>,
    /// TBs by host address (what `Trace` lines name), and by guest pc as a fallback.
    by_host: HashMap<u64, Tb>,
    by_pc: HashMap<u64, Tb>,
    /// The TB being translated: its pc, instruction words, last mnemonic, and (when
    /// annotating) each instruction's text.
    pending: Option<(u64, Vec<u32>, String, Vec<String>)>,
    /// The program that ran last (to break ties between programs).
    last_image: Option<usize>,
    /// Each program's call stack, and the kernel's stack on top of the current one.
    user: HashMap<Option<usize>, Vec<u32>>,
    current_user: Option<Option<usize>>,
    kstack: Vec<u32>,
    /// The TB that ran last.
    prev: Option<Tb>,
    /// The TB whose `Trace` line came last: it counts once the next one comes, unless QEMU
    /// says it stopped before running it (an instruction-count deadline, an interrupt).
    logged: Option<Tb>,
    /// The stack being attributed (kept to save an allocation per TB).
    scratch: Vec<u32>,
    /// Only stacks holding a frame whose name contains this are counted.
    focus: Option<String>,
    /// Functions whose name contains this get their instructions counted one by one.
    annotate: Option<String>,
    /// Each translated TB of an annotated function: its function, first pc, instructions'
    /// text, and how many times it ran (in stacks counted, as `folded`).
    annotated: Vec<(u32, u64, Vec<String>, u64)>,
    /// Instructions per folded stack (frames joined by `;`, outermost first).
    pub folded: HashMap<Vec<u32>, u64>,
    pub total: u64,
    pub counted: u64,
}

/// The kernel's link address (kernel/link.ld).
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

impl Profiler {
    /// A profiler of the images given (`kernel` is the kernel's index, `kernel_load` where
    /// it is loaded); it counts only stacks through a function whose name contains `focus`,
    /// and counts each instruction of the functions whose name contains `annotate` (or one
    /// of its comma-separated parts) ([`Profiler::annotation`]).
    pub fn new(
        images: Vec<Image>,
        kernel: usize,
        kernel_load: u64,
        focus: Option<String>,
        annotate: Option<String>,
    ) -> Profiler {
        let (kernel_base, kernel_size) = images[kernel]
            .segs
            .iter()
            .map(|(a, d)| (*a, *a + d.len() as u64))
            .fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
        Profiler {
            images,
            kernel,
            kernel_load,
            kernel_base,
            kernel_size: kernel_size.saturating_sub(kernel_base),
            names: vec![],
            name_ids: HashMap::new(),
            by_host: HashMap::new(),
            by_pc: HashMap::new(),
            pending: None,
            last_image: None,
            user: HashMap::new(),
            current_user: None,
            kstack: vec![],
            prev: None,
            logged: None,
            scratch: vec![],
            focus,
            annotate,
            annotated: vec![],
            folded: HashMap::new(),
            total: 0,
            counted: 0,
        }
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    fn intern(&mut self, name: String) -> u32 {
        if let Some(id) = self.name_ids.get(&name) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.name_ids.insert(name, id);
        id
    }

    /// Feeds one line of the log.
    pub fn line(&mut self, l: &str) {
        if let Some(rest) = l.strip_prefix("Trace ") {
            self.trace(rest);
        } else if l.starts_with("Stopped execution of TB chain before") {
            self.logged = None;
        } else if l.starts_with("IN:") {
            self.pending = Some((u64::MAX, vec![], String::new(), vec![]));
        } else if let (Some(p), Some(rest)) = (self.pending.as_mut(), l.strip_prefix("0x")) {
            // `0x00080040:  aa0003f3  mov      x19, x0`
            let mut w = rest.split_whitespace();
            let (Some(addr), Some(word)) = (w.next(), w.next()) else { return };
            let (Ok(addr), Ok(word)) =
                (u64::from_str_radix(addr.trim_end_matches(':'), 16), u32::from_str_radix(word, 16))
            else {
                return;
            };
            if p.0 == u64::MAX {
                p.0 = addr;
            }
            p.1.push(word);
            p.2 = w.next().unwrap_or("").to_string();
            if self.annotate.is_some() {
                // The mnemonic and operands, as QEMU disassembled them.
                let text = rest.split_once(':').map_or("", |(_, t)| t.trim());
                p.3.push(text.split_once(char::is_whitespace).map_or("", |(_, t)| t.trim()).to_string());
            }
        }
    }

    /// A `Trace 0: 0xHOST [cs_base/pc/flags/cflags] sym` line: the TB at HOST ran.
    fn trace(&mut self, rest: &str) {
        let mut w = rest.split_whitespace().skip(1);
        let host = w.next().and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
        let pc = w.next().and_then(|f| f.split('/').nth(1)).and_then(|p| u64::from_str_radix(p, 16).ok());
        let (Some(host), Some(pc)) = (host, pc) else { return };
        let tb = match self.pending.take() {
            Some((start, words, last, text)) if start == pc => {
                let tb = self.translate(pc, &words, &last, text);
                self.by_host.insert(host, tb);
                self.by_pc.insert(pc, tb);
                tb
            }
            _ => match self.by_host.get(&host).or_else(|| self.by_pc.get(&pc)) {
                Some(tb) => *tb,
                None => return,
            },
        };
        if let Some(prev) = self.logged.replace(tb) {
            self.ran(prev);
        }
    }

    /// The log has ended: counts the TB logged last.
    pub fn finish(&mut self) {
        if let Some(tb) = self.logged.take() {
            self.ran(tb);
        }
    }

    /// What a newly translated TB is: its image, function and length.
    fn translate(&mut self, pc: u64, words: &[u32], last: &str, text: Vec<String>) -> Tb {
        let kernel_at_load = pc >= self.kernel_load && pc - self.kernel_load < self.kernel_size;
        let (image, addr) = if pc >= KERNEL_VMA {
            (Some(self.kernel), pc)
        } else if kernel_at_load
            && self.images[self.kernel].holds(pc - self.kernel_load + self.kernel_base, words)
        {
            (Some(self.kernel), pc - self.kernel_load + self.kernel_base)
        } else {
            let matching: Vec<usize> = (0..self.images.len())
                .filter(|i| *i != self.kernel && self.images[*i].holds(pc, words))
                .collect();
            let pick = match self.last_image {
                Some(l) if matching.contains(&l) => Some(l),
                _ => matching.first().copied(),
            };
            (pick, pc)
        };
        // QEMU's boot stub (raspi4b's below 0x100) counts as the kernel's.
        let kernel = image == Some(self.kernel) || image.is_none() && pc < 0x1000;
        let name = match image {
            Some(i) => {
                let img = &self.images[i];
                let f = img.syms.function(addr).unwrap_or("?");
                if kernel {
                    f.to_string()
                } else {
                    format!("{}:{f}", img.name)
                }
            }
            None if (0x40_0000..0x4000_0000).contains(&pc) => "[unknown program]".to_string(),
            None => format!("[{}]", if pc < 0x1000 { "firmware" } else { "unknown" }),
        };
        let annotated = match &self.annotate {
            Some(a) if a.split(',').any(|a| name.contains(a)) => {
                self.annotated.push((0, addr, text, 0));
                self.annotated.len() as u32 - 1
            }
            _ => u32::MAX,
        };
        let frame = self.intern(name);
        if let Some(a) = self.annotated.get_mut(annotated as usize) {
            a.0 = frame;
        }
        Tb { insns: words.len() as u64, frame, image, kernel, end: end_of(last), annotated }
    }

    /// Attributes one execution of `tb`, after moving the call stacks to where it runs.
    fn ran(&mut self, tb: Tb) {
        let prev = self.prev.replace(tb);
        if !tb.kernel {
            self.last_image = tb.image.or(self.last_image);
        }
        match prev {
            Some(p) if p.kernel && !tb.kernel => {
                // Back to EL0 (eret), perhaps in another program.
                self.kstack.clear();
                self.current_user = Some(tb.image);
                // The kernel starting a handler (upcall or call) runs it on top of whatever
                // the program was doing, as if called there: its return to the interrupted
                // code (an eret back into a frame below it) then unwinds it.
                let how = if self.is_handler_entry(tb.frame) { End::Call } else { End::Eret };
                let s = self.user.entry(tb.image).or_default();
                resync(s, tb.frame, how);
            }
            Some(p) if !p.kernel && tb.kernel => {
                // Into the kernel from EL0: a system call, fault or interrupt.
                self.current_user = Some(p.image);
                self.kstack.clear();
                self.kstack.push(tb.frame);
            }
            Some(p) if tb.kernel => resync(&mut self.kstack, tb.frame, p.end),
            Some(p) => {
                let s = self.user.entry(tb.image).or_default();
                resync(s, tb.frame, p.end);
                self.current_user = Some(tb.image);
            }
            None => self.kstack.push(tb.frame),
        }
        self.total += tb.insns;
        let user: &[u32] = match (tb.kernel, self.current_user) {
            (false, _) => self.user.get(&tb.image).map_or(&[], |s| s.as_slice()),
            (true, Some(u)) if !self.kstack.is_empty() && self.kstack.len() < 4096 => {
                self.user.get(&u).map_or(&[], |s| s.as_slice())
            }
            _ => &[],
        };
        let mut stack = core::mem::take(&mut self.scratch);
        stack.clear();
        stack.extend_from_slice(user);
        if tb.kernel {
            stack.extend_from_slice(&self.kstack);
        }
        let wanted = self
            .focus
            .as_ref()
            .is_none_or(|f| stack.iter().any(|id| self.names[*id as usize].contains(f.as_str())));
        if wanted {
            if let Some(a) = self.annotated.get_mut(tb.annotated as usize) {
                a.3 += 1;
            }
            self.counted += tb.insns;
            match self.folded.get_mut(stack.as_slice()) {
                Some(n) => *n += tb.insns,
                None => {
                    self.folded.insert(stack.clone(), tb.insns);
                }
            }
        }
        self.scratch = stack;
    }

    /// Whether `frame` is where the kernel starts a libOS handler: an upcall's entry or a
    /// protected control transfer's (`libos/src/upcall.rs`, `ipc.rs`).
    fn is_handler_entry(&self, frame: u32) -> bool {
        let name = &self.names[frame as usize];
        name.ends_with(":exo_upcall_entry") || name.ends_with(":exo_libos::ipc::pct_entry")
    }

    /// The annotated functions' instructions, each with how many times it ran, in address
    /// order (a function's header first): `COUNT  ADDRESS  INSTRUCTION`.
    pub fn annotation(&self) -> String {
        let mut at: std::collections::BTreeMap<(u32, u64), (u64, &str)> = Default::default();
        for (frame, pc, text, runs) in &self.annotated {
            for (i, t) in text.iter().enumerate() {
                at.entry((*frame, pc + 4 * i as u64)).or_insert((0, t)).0 += runs;
            }
        }
        let mut out = String::new();
        let mut last = None;
        for ((frame, addr), (n, t)) in at {
            if last != Some(frame) {
                let total: u64 =
                    self.annotated.iter().filter(|a| a.0 == frame).map(|a| a.3 * a.2.len() as u64).sum();
                out += &format!("\n{} ({total} instructions)\n", self.name(frame));
                last = Some(frame);
            }
            out += &format!("{n:>12}  {addr:016x}  {t}\n");
        }
        out
    }

    /// Folded stacks, one per line: `outer;inner;leaf COUNT`, heaviest first.
    pub fn folded_text(&self) -> String {
        let mut rows: Vec<(String, u64)> = self
            .folded
            .iter()
            .map(|(s, n)| {
                (s.iter().map(|id| self.name(*id).replace(';', ":")).collect::<Vec<_>>().join(";"), *n)
            })
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        rows.iter().map(|(s, n)| format!("{s} {n}\n")).collect()
    }

    /// Per function: (self instructions, instructions with everything it called), by self.
    pub fn functions(&self) -> Vec<(String, u64, u64)> {
        let mut own: HashMap<u32, (u64, u64)> = HashMap::new();
        for (stack, n) in &self.folded {
            if let Some(leaf) = stack.last() {
                own.entry(*leaf).or_default().0 += n;
            }
            let mut seen = std::collections::HashSet::new();
            for id in stack {
                if seen.insert(*id) {
                    own.entry(*id).or_default().1 += n;
                }
            }
        }
        let mut rows: Vec<_> =
            own.into_iter().map(|(id, (s, t))| (self.name(id).to_string(), s, t)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
        rows
    }
}

/// Moves `stack` to `frame` after a TB that ended as `how`.
fn resync(stack: &mut Vec<u32>, frame: u32, how: End) {
    match how {
        End::Call => stack.push(frame),
        End::Ret | End::Eret => {
            if how == End::Ret {
                stack.pop();
            }
            if stack.last() != Some(&frame) {
                match stack.iter().rposition(|f| *f == frame) {
                    Some(i) => stack.truncate(i + 1),
                    None => replace_top(stack, frame),
                }
            }
        }
        End::Other => replace_top(stack, frame),
    }
    if stack.len() > 4096 {
        // Runaway recursion or a mismatched call and return: start again from here.
        stack.clear();
        stack.push(frame);
    }
}

fn replace_top(stack: &mut Vec<u32>, frame: u32) {
    match stack.last_mut() {
        Some(top) => *top = frame,
        None => stack.push(frame),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake image: `words` at `base`, with functions (start, size, name).
    fn image(name: &str, base: u64, words: &[u32], funcs: &[(u64, u64, &str)]) -> Image {
        Image {
            name: name.into(),
            syms: Symbols::from_list(funcs.iter().map(|(a, s, n)| (*a, *s, n.to_string())).collect()),
            segs: vec![(base, words.iter().flat_map(|w| w.to_le_bytes()).collect())],
        }
    }

    fn tb(p: &mut Profiler, host: u64, pc: u64, insns: &[(u32, &str)]) {
        p.line("----------------");
        p.line("IN: ");
        for (i, (w, m)) in insns.iter().enumerate() {
            p.line(&format!("0x{:08x}:  {w:08x}  {m}", pc + 4 * i as u64));
        }
        p.line("");
        run(p, host, pc);
    }

    fn run(p: &mut Profiler, host: u64, pc: u64) {
        p.line(&format!("Trace 0: 0x{host:x} [00000000/{pc:016x}/00000121/ff022200] "));
    }

    #[test]
    fn annotation_counts_each_instruction_of_the_function_asked_for() {
        let a = image("a", 0x40_0000, &[10, 11, 12, 13], &[(0x40_0000, 8, "main"), (0x40_0008, 8, "f")]);
        let kernel = image("kernel", KERNEL_VMA, &[1], &[(KERNEL_VMA, 4, "entry")]);
        let mut p = Profiler::new(vec![kernel, a], 0, 0x8_0000, None, Some("f".into()));
        tb(&mut p, 0x100, 0x40_0000, &[(10, "nop"), (11, "bl")]);
        tb(&mut p, 0x200, 0x40_0008, &[(12, "add x0, x0, #1"), (13, "b")]); // f's first TB, twice
        run(&mut p, 0x200, 0x40_0008);
        tb(&mut p, 0x300, 0x40_000c, &[(13, "b")]); // a second TB from f's second word
        p.finish();
        let text = p.annotation();
        assert!(text.contains("a:f (5 instructions)"), "{text}");
        assert!(text.contains("           3  000000000040000c  b\n"), "{text}"); // both TBs hold it
        assert!(text.contains("           2  0000000000400008  add x0, x0, #1\n"), "{text}");
        assert!(!text.contains("main"), "{text}");
    }

    #[test]
    fn counts_instructions_per_stack_across_calls_system_calls_and_programs() {
        let kernel = image(
            "kernel",
            KERNEL_VMA,
            &[1, 2, 3, 4],
            &[(KERNEL_VMA, 8, "entry"), (KERNEL_VMA + 8, 8, "sys")],
        );
        let a = image("a", 0x40_0000, &[10, 11, 12, 13], &[(0x40_0000, 8, "main"), (0x40_0008, 8, "f")]);
        let b = image("b", 0x40_0000, &[20, 21, 22, 23], &[(0x40_0000, 16, "main")]);
        let mut p = Profiler::new(vec![kernel, a, b], 0, 0x8_0000, None, None);
        tb(&mut p, 0x100, KERNEL_VMA, &[(1, "nop"), (2, "eret")]);
        tb(&mut p, 0x200, 0x40_0000, &[(10, "nop"), (11, "bl")]); // program a calls f
        tb(&mut p, 0x300, 0x40_0008, &[(12, "svc")]); // f makes a system call
        tb(&mut p, 0x400, KERNEL_VMA + 8, &[(3, "nop"), (4, "eret")]);
        tb(&mut p, 0x500, 0x40_0000, &[(20, "nop"), (21, "svc")]); // the kernel switched to b
        run(&mut p, 0x400, KERNEL_VMA + 8);
        tb(&mut p, 0x600, 0x40_000c, &[(13, "ret")]); // back in a's f, which returns
        tb(&mut p, 0x700, 0x40_0004, &[(11, "nop")]);
        p.finish();
        assert_eq!(p.total, 2 + 2 + 1 + 2 + 2 + 2 + 1 + 1);
        let folded = p.folded_text();
        assert!(folded.contains("entry 2\n"), "{folded}");
        assert!(folded.contains("a:main;a:f;sys 2\n"), "{folded}");
        assert!(folded.contains("b:main;sys 2\n"), "{folded}");
        assert!(folded.contains("a:main;a:f 2\n"), "{folded}");
        assert!(folded.contains("a:main 3\n"), "{folded}");
        assert!(folded.contains("b:main 2\n"), "{folded}");
        let funcs = p.functions();
        let sys = funcs.iter().find(|f| f.0 == "sys").unwrap();
        assert_eq!((sys.1, sys.2), (4, 4));
        let main = funcs.iter().find(|f| f.0 == "a:main").unwrap();
        assert_eq!((main.1, main.2), (3, 3 + 2 + 2));
    }

    #[test]
    fn an_upcall_handler_runs_on_top_of_the_interrupted_code_and_unwinds_at_resume() {
        let kernel = image("kernel", KERNEL_VMA, &[1, 2], &[(KERNEL_VMA, 8, "vector")]);
        let funcs = [(0x40_0000, 8, "main"), (0x40_0008, 4, "exo_upcall_entry"), (0x40_000c, 4, "dispatch")];
        let a = image("a", 0x40_0000, &[10, 11, 12, 13], &funcs);
        let mut p = Profiler::new(vec![kernel, a], 0, 0x8_0000, None, None);
        tb(&mut p, 0x200, KERNEL_VMA, &[(1, "nop"), (2, "eret")]); // boot, into main
        tb(&mut p, 0x100, 0x40_0000, &[(10, "ldr")]); // main faults
        run(&mut p, 0x200, KERNEL_VMA); // the kernel delivers the fault
        tb(&mut p, 0x300, 0x40_0008, &[(12, "bl")]); // the handler's entry
        tb(&mut p, 0x400, 0x40_000c, &[(13, "svc")]); // dispatch resumes (UpcallResume)
        run(&mut p, 0x200, KERNEL_VMA);
        for _ in 0..3 {
            for (host, pc) in
                [(0x100, 0x40_0000), (0x200, KERNEL_VMA), (0x300, 0x40_0008), (0x400, 0x40_000c)]
            {
                run(&mut p, host, pc);
            }
            run(&mut p, 0x200, KERNEL_VMA);
        }
        run(&mut p, 0x100, 0x40_0000); // main again, after the last resume
        p.finish();
        let mut folded: Vec<&str> = Vec::new();
        let text = p.folded_text();
        folded.extend(text.lines());
        folded.sort();
        assert_eq!(
            folded,
            [
                "a:main 5",
                "a:main;a:exo_upcall_entry 4",
                "a:main;a:exo_upcall_entry;a:dispatch 4",
                "a:main;a:exo_upcall_entry;a:dispatch;vector 8",
                "a:main;vector 8",
                "vector 2",
            ],
            "{text}"
        );
    }

    #[test]
    fn kernel_before_the_mmu_is_symbolized_from_its_load_address_and_focus_filters() {
        let kernel = image("kernel", KERNEL_VMA, &[1, 2], &[(KERNEL_VMA, 8, "_start")]);
        let mut p = Profiler::new(vec![kernel], 0, 0x8_0000, Some("nothing".into()), None);
        tb(&mut p, 0x100, 0x8_0000, &[(1, "nop"), (2, "b")]);
        tb(&mut p, 0x200, 0x0, &[(9, "br")]);
        run(&mut p, 0x100, 0x8_0000);
        assert_eq!((p.total, p.counted), (3, 0));
        p.focus = None;
        // QEMU logged the TB, then stopped before running it (its instruction budget ran out).
        p.line("Stopped execution of TB chain before 0x100 [0000000000080000] ");
        run(&mut p, 0x100, 0x8_0000);
        p.finish();
        assert_eq!(p.total, 5);
        assert_eq!(p.folded_text(), "_start 2\n", "{}", p.folded_text());
        assert_eq!(p.functions()[0].0, "_start");
    }
}
