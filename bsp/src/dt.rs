//! Device-tree discovery: what board this is and where its devices and memory are.
//!
//! Everything the kernel needs from the DTB is read once into a [`BoardInfo`], a plain value
//! with fixed-size lists so that it can be built before there is a heap. Addresses are CPU
//! physical addresses: bus addresses under `/soc` (the Pi's 0x7e...) are translated through
//! every ancestor's `ranges`.
//!
//! The `fdt` crate checks the header; the structure block is read by our own walk
//! (`Tokens`), once, token by token, with every length and offset bounds-checked. The
//! crate's node iterators re-parse a subtree at every level above it (a fifth of raspi4b's
//! boot) and panic on a damaged block (289 of 3,000 single bit flips).

use fdt::node::CellSizes;
use fdt::Fdt;

/// A physical address range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub const fn end(&self) -> u64 {
        self.base + self.size
    }
}

/// How bus masters on a bus see RAM (one `dma-ranges` entry): bus addresses
/// `bus .. bus + size` are CPU physical addresses `cpu .. cpu + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaWindow {
    pub bus: u64,
    pub cpu: u64,
    pub size: u64,
}

impl DmaWindow {
    /// The bus address of `len` bytes at CPU physical `pa`, if the window holds all of them.
    pub fn to_bus(&self, pa: u64, len: u64) -> Option<u64> {
        let end = pa.checked_add(len)?;
        (pa >= self.cpu && end <= self.cpu + self.size).then(|| self.bus + (pa - self.cpu))
    }
}

/// A short list of regions that needs no heap.
#[derive(Clone, Copy, Debug)]
pub struct Regions<const N: usize> {
    items: [Region; N],
    len: usize,
}

impl<const N: usize> Default for Regions<N> {
    fn default() -> Self {
        Self { items: [Region::default(); N], len: 0 }
    }
}

impl<const N: usize> Regions<N> {
    /// Adds a region; empty ones are ignored and extra ones dropped (returns false).
    pub fn push(&mut self, r: Region) -> bool {
        if r.size == 0 {
            return true;
        }
        if self.len == N {
            return false;
        }
        self.items[self.len] = r;
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[Region] {
        &self.items[..self.len]
    }

    pub fn total(&self) -> u64 {
        self.as_slice().iter().map(|r| r.size).sum()
    }
}

/// The cores a device tree lists: each one's `reg` (its MPIDR affinity fields) and, for a
/// core that waits in a spin table, its `cpu-release-addr` (0: started through PSCI, or none).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpus {
    mpidr: [u64; 8],
    release: [u64; 8],
    len: usize,
}

impl Cpus {
    fn push(&mut self, mpidr: u64, release: u64) {
        if self.len < self.mpidr.len() {
            (self.mpidr[self.len], self.release[self.len]) = (mpidr, release);
            self.len += 1;
        }
    }

    /// `(mpidr, release address)` of each core, in device-tree order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.mpidr[..self.len].iter().copied().zip(self.release[..self.len].iter().copied())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Reference clock of the Pi 4's UART0 as the firmware sets it up (`init_uart_clock`).
pub const RPI4_UART_CLOCK: u32 = 48_000_000;

/// Which board the device tree describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoardKind {
    /// QEMU's `virt` machine.
    Virt,
    /// A Raspberry Pi 4 (BCM2711), real or QEMU `raspi4b`.
    Rpi4,
}

impl BoardKind {
    /// The console UART's reference clock where the board fixes it (the device tree's
    /// clock nodes are not followed).
    pub fn uart_clock(self) -> Option<u32> {
        (self == BoardKind::Rpi4).then_some(RPI4_UART_CLOCK)
    }

    pub const fn name(self) -> &'static str {
        match self {
            BoardKind::Virt => "virt",
            BoardKind::Rpi4 => "rpi4",
        }
    }

    /// The board's number in the kernel information page ([`exo_abi::board`]).
    pub const fn abi(self) -> u32 {
        match self {
            BoardKind::Virt => exo_abi::board::VIRT,
            BoardKind::Rpi4 => exo_abi::board::RPI4,
        }
    }
}

/// Where the GIC's register frames are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gic {
    V2 { dist: u64, cpu: u64 },
    V3 { dist: u64, redist: u64 },
}

/// How PSCI calls are made, when the board has PSCI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciConduit {
    Hvc,
    Smc,
}

/// Everything the kernel learns from the device tree.
#[derive(Clone, Copy, Debug)]
pub struct BoardInfo {
    pub kind: BoardKind,
    /// RAM as the `memory` nodes list it.
    pub memory: Regions<8>,
    /// RAM that is not ours: `/memreserve/` entries and `/reserved-memory` children with a `reg`.
    pub reserved: Regions<16>,
    /// PL011 UART registers (the console), and its interrupt (INTID).
    pub uart: Option<Region>,
    pub uart_intid: Option<u32>,
    pub gic: Option<Gic>,
    /// INTID of the EL1 virtual timer (a PPI, so 16..32).
    pub timer_intid: u32,
    pub psci: Option<PsciConduit>,
    /// virtio-mmio transport slots, in device-tree order, and each one's interrupt (INTID;
    /// 0: none given), by the same index.
    pub virtio_mmio: Regions<32>,
    pub virtio_intids: [u32; 32],
    /// SDHCI controllers: the Pi's legacy Arasan EMMC and its EMMC2, when present.
    pub sdhci_legacy: Option<Region>,
    pub sdhci_emmc2: Option<Region>,
    /// The VideoCore mailbox (Pi only).
    pub mailbox: Option<Region>,
    /// How the VideoCore and other `/soc` bus masters see RAM: the first entry of `/soc`'s
    /// `dma-ranges` (Pi 4: bus `0xc000_0000` is ARM `0x0`, 1 GiB).
    pub soc_dma: Option<DmaWindow>,
    /// The power-management block that holds the watchdog (Pi only).
    pub watchdog: Option<Region>,
    /// Spin-table release addresses of the cores other than CPU 0 (Pi: the firmware stub
    /// polls them). Empty where cores start through PSCI or not at all.
    pub spin_table: Regions<8>,
    /// Every core the `/cpus` node lists, boot core included, and how each one starts.
    pub cpus: Cpus,
    /// An initial ramdisk the loader placed in memory (`/chosen/linux,initrd-*`).
    pub initrd: Option<Region>,
    /// `/chosen/bootargs`, truncated to fit.
    bootargs: [u8; 256],
    bootargs_len: usize,
}

/// Why a DTB could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Not a flattened device tree (bad magic or too short).
    NotADtb,
    /// The root `compatible` names no board exo supports.
    UnknownBoard,
    /// No `memory` node with a usable `reg`.
    NoMemory,
}

impl BoardInfo {
    pub fn bootargs(&self) -> &str {
        core::str::from_utf8(&self.bootargs[..self.bootargs_len]).unwrap_or("")
    }

    /// Reads a device tree. The bytes must hold the whole blob (its `totalsize`). NOP tokens
    /// are squeezed out of it in place first (see [`strip_nops`]).
    pub fn parse(dtb: &mut [u8]) -> Result<BoardInfo, DtError> {
        strip_nops(dtb)?;
        Fdt::new(dtb).map_err(|_| DtError::NotADtb)?; // (the header's checks)
        let mut info = BoardInfo {
            kind: BoardKind::Virt, // (until the root's `compatible` is read: `board_kind`)
            memory: Regions::default(),
            reserved: Regions::default(),
            uart: None,
            uart_intid: None,
            gic: None,
            timer_intid: 27,
            psci: None,
            virtio_mmio: Regions::default(),
            virtio_intids: [0; 32],
            sdhci_legacy: None,
            sdhci_emmc2: None,
            mailbox: None,
            soc_dma: None,
            watchdog: None,
            spin_table: Regions::default(),
            cpus: Cpus::default(),
            initrd: None,
            bootargs: [0; 256],
            bootargs_len: 0,
        };
        // The memory reservation block: (address, size) pairs, ended by a pair of zeros.
        let rsv = dtb.get(16..20).and_then(be_uint).map_or(usize::MAX, |v| v as usize);
        let pairs = dtb
            .get(rsv..)
            .unwrap_or(&[])
            .chunks_exact(16)
            .map(|e| Region { base: be_uint(&e[..8]).unwrap_or(0), size: be_uint(&e[8..]).unwrap_or(0) });
        pairs.take_while(|r| *r != Region::default()).for_each(|r| _ = info.reserved.push(r));
        let mut path = Path { ranges: [None; MAX_DEPTH], depth: 0, root: Props::default(), soc: None };
        let mut t = Tokens::new(dtb).ok_or(DtError::NotADtb)?;
        (t.word() == Some(BEGIN_NODE)).then_some(()).ok_or(DtError::NotADtb)?;
        // (The root has no `reg`: the cell sizes its parent would give are never read.)
        walk(&mut t, CellSizes::default(), &mut path, &mut info, false).ok_or(DtError::NotADtb)?;
        info.kind = board_kind(path.root.compatible)?;
        if info.memory.as_slice().is_empty() {
            return Err(DtError::NoMemory);
        }
        info.soc_dma = path.soc.and_then(|soc| soc_dma_window(soc, path.root.cells));
        Ok(info)
    }
}

fn board_kind(compat: &[u8]) -> Result<BoardKind, DtError> {
    for c in compat.split(|&b| b == 0) {
        match c {
            b"linux,dummy-virt" => return Ok(BoardKind::Virt),
            b"raspberrypi,4-model-b" | b"brcm,bcm2711" => return Ok(BoardKind::Rpi4),
            _ => {}
        }
    }
    Err(DtError::UnknownBoard)
}

/// `/chosen`: the bootargs and the initrd.
fn read_chosen(chosen: &Props, info: &mut BoardInfo) {
    let n = chosen.bootargs.len().min(info.bootargs.len());
    info.bootargs[..n].copy_from_slice(&chosen.bootargs[..n]);
    info.bootargs_len = n;
    if let (Some(start), Some(end)) = (chosen.initrd.0, chosen.initrd.1) {
        if end > start {
            info.initrd = Some(Region { base: start, size: end - start });
        }
    }
}

/// The first `dma-ranges` entry of `/soc`: child bus address, parent (root) address, size.
fn soc_dma_window(soc: (&[u8], CellSizes), root: CellSizes) -> Option<DmaWindow> {
    let (value, own) = soc;
    let (c, p, s) = (4 * own.address_cells, 4 * root.address_cells, 4 * own.size_cells);
    let e = value.get(..c + p + s)?;
    Some(DmaWindow { bus: be_uint(&e[..c])?, cpu: be_uint(&e[c..c + p])?, size: be_uint(&e[c + p..])? })
}

/// Deepest nesting of `ranges` we follow; real trees use three or four levels.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Copy)]
struct Ranges<'a> {
    /// The raw `ranges` value (empty means identity).
    value: &'a [u8],
    /// `#address-cells` of the node holding `ranges` (child side).
    child_cells: usize,
    /// `#address-cells` of its parent.
    parent_cells: usize,
    /// `#size-cells` of the node holding `ranges`.
    size_cells: usize,
}

/// The chain of `ranges` from the root down to the node being visited.
/// `None` at a level means that bus has no `ranges`: its children are not CPU-addressable.
struct Path<'a> {
    ranges: [Option<Ranges<'a>>; MAX_DEPTH],
    depth: usize,
    /// The root node (its `compatible` names the board), once read.
    root: Props<'a>,
    /// `/soc`'s `dma-ranges` and own cell sizes, if it has them.
    soc: Option<(&'a [u8], CellSizes)>,
}

impl Path<'_> {
    /// Turns an address on the innermost bus into a CPU physical address.
    fn translate(&self, mut addr: u64) -> Option<u64> {
        for level in (0..self.depth).rev() {
            addr = self.ranges[level].as_ref()?.map(addr)?;
        }
        Some(addr)
    }
}

impl Ranges<'_> {
    fn map(&self, addr: u64) -> Option<u64> {
        if self.value.is_empty() {
            return Some(addr);
        }
        let entry = 4 * (self.child_cells + self.parent_cells + self.size_cells);
        if entry == 0 {
            return None;
        }
        for e in self.value.chunks_exact(entry) {
            let (child, rest) = e.split_at(4 * self.child_cells);
            let (parent, size) = rest.split_at(4 * self.parent_cells);
            let (child, parent, size) = (be_uint(child)?, be_uint(parent)?, be_uint(size)?);
            if addr >= child && addr - child < size {
                return Some(parent + (addr - child));
            }
        }
        None
    }
}

/// Reads a big-endian number of one or two cells; wider values keep the low 64 bits.
fn be_uint(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(bytes.iter().fold(0u64, |acc, b| (acc << 8) | *b as u64))
}

/// An interrupt as an INTID, if it is an SPI: `interrupts = <type number flags>`, where
/// type 0 is an SPI, and SPIs start at INTID 32.
fn spi_intid(interrupts: &[u8]) -> Option<u32> {
    let v = interrupts.get(..8)?;
    (be_uint(&v[..4]) == Some(0)).then(|| be_uint(&v[4..8]).map(|n| 32 + n as u32)).flatten()
}

/// First entry of a `reg` value, translated to a CPU address. `cells` are the parent's sizes.
fn first_reg(reg: &[u8], cells: CellSizes, path: &Path) -> Option<Region> {
    regs(reg, cells, path).next()
}

fn regs<'a>(value: &'a [u8], cells: CellSizes, path: &'a Path) -> impl Iterator<Item = Region> + 'a {
    let (a, s) = (4 * cells.address_cells, 4 * cells.size_cells);
    let step = if a + s == 0 { 1 } else { a + s };
    value.chunks_exact(step).filter(move |_| a > 0).filter_map(move |e| {
        let base = path.translate(be_uint(&e[..a])?)?;
        let size = if s == 0 { 0 } else { be_uint(&e[a..])? };
        Some(Region { base, size })
    })
}

/// The devices [`visit`] reads, and the `compatible` strings that name each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Device {
    Psci,
    Timer,
    Uart,
    GicV2,
    GicV3,
    Virtio,
    Emmc2,
    Sdhci,
    Mailbox,
    Watchdog,
}

const DEVICES: [(&[u8], Device); 15] = [
    (b"arm,psci-1.0", Device::Psci),
    (b"arm,psci-0.2", Device::Psci),
    (b"arm,psci", Device::Psci),
    (b"arm,armv8-timer", Device::Timer),
    (b"arm,pl011", Device::Uart),
    (b"arm,cortex-a15-gic", Device::GicV2),
    (b"arm,gic-400", Device::GicV2),
    (b"arm,gic-v3", Device::GicV3),
    (b"virtio,mmio", Device::Virtio),
    (b"brcm,bcm2711-emmc2", Device::Emmc2),
    (b"brcm,bcm2835-sdhci", Device::Sdhci),
    (b"brcm,bcm2835-mbox", Device::Mailbox),
    (b"brcm,bcm2711-pm", Device::Watchdog),
    (b"brcm,bcm2835-pm-wdt", Device::Watchdog),
    (b"brcm,bcm2835-pm", Device::Watchdog),
];

/// The device a node's raw `compatible` (NUL-separated strings) names, by its first string
/// that names one: compared as bytes, and split once per node (a split per device tested
/// was 3% of raspi4b's boot).
fn device(compat: &[u8]) -> Option<Device> {
    compat.split(|&b| b == 0).find_map(|c| DEVICES.iter().find(|(name, _)| *name == c).map(|&(_, d)| d))
}

const BEGIN_NODE: u32 = 1;
const END_NODE: u32 = 2;
const PROP: u32 = 3;

/// The structure block, read once from its start to its end: the walk visits each node as
/// it passes (NOPs are gone: [`strip_nops`]). The `fdt` crate's iterators skip a node's
/// whole subtree to reach its next sibling and parse every property again at every level
/// above it, which made the walk about a fifth of raspi4b's boot. A malformed block ends the
/// walk with `None` (a name or value past its block's end, an unknown token).
struct Tokens<'a> {
    block: &'a [u8],
    strings: &'a [u8],
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(dtb: &'a [u8]) -> Option<Tokens<'a>> {
        let word = |at: usize| Some(be_uint(dtb.get(at..at + 4)?)? as usize);
        let (block, strings) = ((word(8)?, word(36)?), (word(12)?, word(32)?));
        Some(Tokens {
            block: dtb.get(block.0..block.0.checked_add(block.1)?)?,
            strings: dtb.get(strings.0..strings.0.checked_add(strings.1)?)?,
            at: 0,
        })
    }

    fn peek(&self) -> Option<u32> {
        // (Not `be_uint`, whose byte loop made the walk 0.13 million slower: every token.)
        Some(u32::from_be_bytes(self.block.get(self.at..self.at + 4)?.try_into().ok()?))
    }

    fn word(&mut self) -> Option<u32> {
        let w = self.peek()?;
        self.at += 4;
        Some(w)
    }

    /// Just past a BEGIN_NODE: the node's name (with its unit address).
    fn name(&mut self) -> Option<&'a [u8]> {
        let rest = self.block.get(self.at..)?;
        let n = rest.iter().position(|&b| b == 0)?;
        self.at += (n + 1).next_multiple_of(4);
        Some(&rest[..n])
    }

    /// Just past a PROP: the property's name and value.
    fn prop(&mut self) -> Option<(&'a [u8], &'a [u8])> {
        let (len, name) = (self.word()? as usize, self.word()? as usize);
        let value = self.block.get(self.at..self.at.checked_add(len)?)?;
        self.at += len.next_multiple_of(4);
        let name = self.strings.get(name..)?;
        Some((&name[..name.iter().position(|&b| b == 0)?], value))
    }

    /// Just past a BEGIN_NODE: the rest of that node, its subtree with it, without a visit
    /// (and without recursion: a deep tree cannot exhaust the stack).
    fn skip(&mut self) -> Option<()> {
        self.name()?;
        let mut depth = 1usize;
        while depth > 0 {
            match self.word()? {
                BEGIN_NODE => (_, depth) = (self.name()?, depth + 1),
                PROP => _ = self.prop()?,
                END_NODE => depth -= 1,
                _ => return None,
            }
        }
        Some(())
    }
}

/// A string property's text: up to its first NUL.
fn text(value: &[u8]) -> &[u8] {
    value.split(|&b| b == 0).next().unwrap_or(value)
}

/// What the walk reads of every node, gathered in one pass over its properties.
#[derive(Default)]
struct Props<'a> {
    name: &'a [u8],
    device_type: &'a [u8],
    compatible: &'a [u8],
    disabled: bool,
    ranges: Option<&'a [u8]>,
    reg: &'a [u8],
    interrupts: &'a [u8],
    /// PSCI's `method`, a CPU's `enable-method`.
    method: &'a [u8],
    release: Option<u64>,
    /// `/chosen`'s `bootargs`, `linux,initrd-start` and `linux,initrd-end`.
    bootargs: &'a [u8],
    initrd: (Option<u64>, Option<u64>),
    dma_ranges: Option<&'a [u8]>,
    /// The node's own `#address-cells` and `#size-cells` (how its children are encoded).
    cells: CellSizes,
}

/// Just past a BEGIN_NODE: the node's name and properties.
fn props<'a>(t: &mut Tokens<'a>) -> Option<Props<'a>> {
    let mut p = Props { name: t.name()?, ..Props::default() };
    let cell = |v: &[u8]| v.get(..4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize);
    while t.peek()? == PROP {
        t.word();
        let (name, value) = t.prop()?;
        match name {
            b"device_type" => p.device_type = text(value),
            b"compatible" => p.compatible = value,
            b"status" => p.disabled = !matches!(text(value), b"okay" | b"ok"),
            b"ranges" => p.ranges = Some(value),
            b"reg" => p.reg = value,
            b"interrupts" => p.interrupts = value,
            b"method" | b"enable-method" => p.method = text(value),
            b"cpu-release-addr" => p.release = be_uint(value),
            b"bootargs" => p.bootargs = text(value),
            b"linux,initrd-start" => p.initrd.0 = be_uint(value),
            b"linux,initrd-end" => p.initrd.1 = be_uint(value),
            b"dma-ranges" => p.dma_ranges = Some(value),
            b"#address-cells" => p.cells.address_cells = cell(value).unwrap_or(p.cells.address_cells),
            b"#size-cells" => p.cells.size_cells = cell(value).unwrap_or(p.cells.size_cells),
            _ => {}
        }
    }
    Some(p)
}

/// Depth-first walk, just past a node's BEGIN_NODE: the node and its subtree, to its
/// END_NODE. `cells` are `node`'s parent's cell sizes (how its `reg` is encoded);
/// `reserved`, whether the parent is `/reserved-memory` (its children's `reg` are reserved).
/// Nodes deeper than `MAX_DEPTH` are passed over.
fn walk<'a>(
    t: &mut Tokens<'a>,
    cells: CellSizes,
    path: &mut Path<'a>,
    info: &mut BoardInfo,
    reserved: bool,
) -> Option<()> {
    let props = props(t)?;
    match (path.depth, props.name) {
        (1, b"chosen") => read_chosen(&props, info),
        (1, b"soc") => path.soc = props.dma_ranges.map(|v| (v, props.cells)),
        _ => {}
    }
    if reserved {
        regs(props.reg, cells, path).for_each(|r| _ = info.reserved.push(r));
    }
    visit(&props, cells, path, info);
    let own = props.cells;
    // The root's children are on the CPU's own address space; deeper buses need `ranges`.
    path.ranges[path.depth] = if path.depth == 0 {
        Some(Ranges { value: &[], child_cells: 0, parent_cells: 0, size_cells: 0 })
    } else {
        props.ranges.map(|value| Ranges {
            value,
            child_cells: own.address_cells,
            parent_cells: cells.address_cells,
            size_cells: own.size_cells,
        })
    };
    path.depth += 1;
    while t.peek()? == BEGIN_NODE {
        t.word();
        match path.depth < MAX_DEPTH {
            true => walk(t, own, path, info, props.name == b"reserved-memory")?,
            false => t.skip()?,
        }
    }
    path.depth -= 1;
    if path.depth == 0 {
        path.root = props;
    }
    (t.word()? == END_NODE).then_some(())
}

fn visit(node: &Props, cells: CellSizes, path: &Path, info: &mut BoardInfo) {
    if node.device_type == b"memory" {
        regs(node.reg, cells, path).for_each(|r| _ = info.memory.push(r));
        return;
    }
    if node.name == b"reserved-memory" {
        return; // (its children's `reg`: `walk`)
    }
    let device = device(node.compatible);
    if node.name == b"psci" || device == Some(Device::Psci) {
        info.psci = match node.method {
            b"hvc" => Some(PsciConduit::Hvc),
            b"smc" => Some(PsciConduit::Smc),
            _ => None,
        };
        return;
    }
    if node.disabled {
        return;
    }
    if node.device_type == b"cpu" {
        let spin = node.method == b"spin-table";
        if let (true, Some(addr), Some(1..)) = (spin, node.release, be_uint(node.reg)) {
            info.spin_table.push(Region { base: addr, size: 8 });
        }
        if let Some(id) = be_uint(node.reg) {
            info.cpus.push(id, spin.then_some(node.release).flatten().unwrap_or(0));
        }
        return;
    }
    let Some(device) = device else { return };
    let reg = first_reg(node.reg, cells, path);
    let mut both = regs(node.reg, cells, path); // (a GIC's two regions)
    match device {
        // interrupts = <secure-phys, phys, virt, hyp>, three cells each; PPIs start at 16.
        Device::Timer => {
            if let Some(irq) = node.interrupts.get(24..36).filter(|irq| irq[..4] == [0, 0, 0, 1]) {
                info.timer_intid = be_uint(&irq[4..8]).map_or(info.timer_intid, |n| 16 + n as u32);
            }
        }
        Device::Uart if info.uart.is_none() => {
            (info.uart, info.uart_intid) = (reg, spi_intid(node.interrupts))
        }
        Device::GicV2 => {
            if let (Some(d), Some(c)) = (both.next(), both.next()) {
                info.gic = Some(Gic::V2 { dist: d.base, cpu: c.base });
            }
        }
        Device::GicV3 => {
            if let (Some(d), Some(rd)) = (both.next(), both.next()) {
                info.gic = Some(Gic::V3 { dist: d.base, redist: rd.base });
            }
        }
        Device::Virtio => {
            if let Some(r) = reg.filter(|r| r.size != 0) {
                let i = info.virtio_mmio.as_slice().len();
                if info.virtio_mmio.push(r) {
                    info.virtio_intids[i] = spi_intid(node.interrupts).unwrap_or(0);
                }
            }
        }
        Device::Emmc2 => info.sdhci_emmc2 = reg,
        Device::Sdhci => info.sdhci_legacy = reg,
        Device::Mailbox => info.mailbox = reg,
        Device::Watchdog => info.watchdog = reg,
        Device::Psci | Device::Uart => {}
    }
}

/// Removes `FDT_NOP` tokens from the structure block, in place, and shrinks its size field.
///
/// Boot loaders that edit a tree (QEMU rewriting `/chosen`, the Pi firmware) leave NOPs
/// behind, and the `fdt` crate stops at a NOP between a node's properties and its children.
/// The result is an equivalent, valid blob. Every length is bounds-checked: a malformed
/// structure block is refused, not walked past its end.
pub fn strip_nops(dtb: &mut [u8]) -> Result<(), DtError> {
    let word = |b: &[u8], at: usize| -> Result<u32, DtError> {
        let w = b.get(at..at + 4).ok_or(DtError::NotADtb)?;
        Ok(u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    if word(dtb, 0)? != 0xd00d_feed || (word(dtb, 4)? as usize) > dtb.len() {
        return Err(DtError::NotADtb);
    }
    let start = word(dtb, 8)? as usize;
    let size = word(dtb, 36)? as usize;
    let end = start.checked_add(size).filter(|&e| e <= dtb.len()).ok_or(DtError::NotADtb)?;
    let (mut read, mut write) = (start, start);
    while read < end {
        let token = word(dtb, read)?;
        let len = match token {
            1 => {
                // BEGIN_NODE: the token, then a NUL-terminated name padded to 4 bytes.
                let name = dtb.get(read + 4..end).ok_or(DtError::NotADtb)?;
                let nul = name.iter().position(|&b| b == 0).ok_or(DtError::NotADtb)?;
                4 + (nul + 1).next_multiple_of(4)
            }
            3 => 12 + (word(dtb, read + 4)? as usize).next_multiple_of(4), // PROP
            2 | 9 => 4,                                                    // END_NODE, END
            4 => {
                read += 4; // NOP: drop it
                continue;
            }
            _ => return Err(DtError::NotADtb),
        };
        if read + len > end {
            return Err(DtError::NotADtb);
        }
        dtb.copy_within(read..read + len, write);
        read += len;
        write += len;
        if token == 9 {
            break;
        }
    }
    let new_size = ((write - start) as u32).to_be_bytes();
    dtb[36..40].copy_from_slice(&new_size);
    Ok(())
}
