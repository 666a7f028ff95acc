//! Device-tree discovery: what board this is and where its devices and memory are.
//!
//! Everything the kernel needs from the DTB is read once into a [`BoardInfo`], a plain value
//! with fixed-size lists so that it can be built before there is a heap. Addresses are CPU
//! physical addresses: bus addresses under `/soc` (the Pi's 0x7e...) are translated through
//! every ancestor's `ranges`, which the `fdt` crate does not do for us.

use fdt::node::{CellSizes, FdtNode};
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
        (self == BoardKind::Rpi4).then_some(crate::board::RPI4_UART_CLOCK)
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
        let fdt = Fdt::new(dtb).map_err(|_| DtError::NotADtb)?;
        let kind = board_kind(&fdt)?;
        let mut info = BoardInfo {
            kind,
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
        for r in fdt.memory_reservations() {
            info.reserved.push(Region { base: r.address() as u64, size: r.size() as u64 });
        }
        let root = fdt.find_node("/").ok_or(DtError::NotADtb)?;
        let mut path = Path { ranges: [None; MAX_DEPTH], depth: 0 };
        // The root node's children sit directly on the CPU's address space.
        walk(root, root.cell_sizes(), &mut path, &mut info);
        if info.memory.as_slice().is_empty() {
            return Err(DtError::NoMemory);
        }
        read_chosen(&fdt, &mut info);
        info.soc_dma = soc_dma_window(&fdt, root.cell_sizes());
        Ok(info)
    }
}

fn board_kind(fdt: &Fdt) -> Result<BoardKind, DtError> {
    let root = fdt.find_node("/").ok_or(DtError::NotADtb)?;
    let compat = root.compatible().ok_or(DtError::UnknownBoard)?;
    for c in compat.all() {
        match c {
            "linux,dummy-virt" => return Ok(BoardKind::Virt),
            "raspberrypi,4-model-b" | "brcm,bcm2711" => return Ok(BoardKind::Rpi4),
            _ => {}
        }
    }
    Err(DtError::UnknownBoard)
}

fn read_chosen(fdt: &Fdt, info: &mut BoardInfo) {
    let Some(chosen) = fdt.find_node("/chosen") else {
        return;
    };
    if let Some(args) = chosen.property("bootargs").and_then(|p| p.as_str()) {
        let n = args.len().min(info.bootargs.len());
        info.bootargs[..n].copy_from_slice(&args.as_bytes()[..n]);
        info.bootargs_len = n;
    }
    let cell = |name: &str| chosen.property(name).and_then(|p| be_uint(p.value));
    if let (Some(start), Some(end)) = (cell("linux,initrd-start"), cell("linux,initrd-end")) {
        if end > start {
            info.initrd = Some(Region { base: start, size: end - start });
        }
    }
}

/// The first `dma-ranges` entry of `/soc`: child bus address, parent (root) address, size.
fn soc_dma_window(fdt: &Fdt, root: CellSizes) -> Option<DmaWindow> {
    let soc = fdt.find_node("/soc")?;
    let value = soc.property("dma-ranges")?.value;
    let own = soc.cell_sizes();
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

/// `node`'s interrupt as an INTID, if it is an SPI: `interrupts = <type number flags>`,
/// where type 0 is an SPI, and SPIs start at INTID 32.
fn spi_intid(node: &FdtNode) -> Option<u32> {
    let v = node.property("interrupts")?.value.get(..8)?;
    (be_uint(&v[..4]) == Some(0)).then(|| be_uint(&v[4..8]).map(|n| 32 + n as u32)).flatten()
}

/// First `reg` entry of `node`, translated to a CPU address. `cells` are the parent's sizes.
fn first_reg(node: &FdtNode, cells: CellSizes, path: &Path) -> Option<Region> {
    regs(node, cells, path).next()
}

fn regs<'a>(node: &FdtNode<'_, 'a>, cells: CellSizes, path: &'a Path) -> impl Iterator<Item = Region> + 'a {
    let value = node.property("reg").map(|p| p.value).unwrap_or(&[]);
    let (a, s) = (4 * cells.address_cells, 4 * cells.size_cells);
    let step = if a + s == 0 { 1 } else { a + s };
    value.chunks_exact(step).filter(move |_| a > 0).filter_map(move |e| {
        let base = path.translate(be_uint(&e[..a])?)?;
        let size = if s == 0 { 0 } else { be_uint(&e[a..])? };
        Some(Region { base, size })
    })
}

/// Whether a node's raw `compatible` (NUL-separated strings, read once per node) names one
/// of `names`: compared as bytes, without the UTF-8 check and property parse per test that
/// made the walk a tenth of raspi4b's boot.
fn is_compatible(compat: &[u8], names: &[&str]) -> bool {
    compat.split(|&b| b == 0).any(|x| names.iter().any(|n| n.as_bytes() == x))
}

/// What the walk reads of every node, gathered in one pass over its properties: looking
/// each up by name scanned them all (and checked each name's UTF-8) six times per node,
/// most of the walk's cost at boot.
struct Props<'a> {
    device_type: Option<&'a str>,
    compatible: &'a [u8],
    enabled: bool,
    ranges: Option<&'a [u8]>,
    /// The node's own `#address-cells` and `#size-cells` (how its children are encoded).
    cells: CellSizes,
}

fn props<'a>(node: &FdtNode<'_, 'a>) -> Props<'a> {
    let mut p = Props {
        device_type: None,
        compatible: &[],
        enabled: true,
        ranges: None,
        cells: CellSizes::default(),
    };
    let cell = |v: &[u8]| v.get(..4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as usize);
    for prop in node.properties() {
        match prop.name {
            "device_type" => p.device_type = prop.as_str(),
            "compatible" => p.compatible = prop.value,
            "status" => p.enabled = prop.as_str().is_none_or(|s| s == "okay" || s == "ok"),
            "ranges" => p.ranges = Some(prop.value),
            "#address-cells" => p.cells.address_cells = cell(prop.value).unwrap_or(p.cells.address_cells),
            "#size-cells" => p.cells.size_cells = cell(prop.value).unwrap_or(p.cells.size_cells),
            _ => {}
        }
    }
    p
}

/// Depth-first walk. `cells` are `node`'s parent's cell sizes (how `node`'s `reg` is encoded).
fn walk<'a>(node: FdtNode<'_, 'a>, cells: CellSizes, path: &mut Path<'a>, info: &mut BoardInfo) {
    let props = props(&node);
    visit(&node, &props, cells, path, info);
    if path.depth == MAX_DEPTH {
        return;
    }
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
    for child in node.children() {
        walk(child, own, path, info);
    }
    path.depth -= 1;
}

fn visit(node: &FdtNode, props: &Props, cells: CellSizes, path: &Path, info: &mut BoardInfo) {
    let (device_type, compat) = (props.device_type, props.compatible);
    if device_type == Some("memory") {
        for r in regs(node, cells, path) {
            info.memory.push(r);
        }
        return;
    }
    if node.name == "reserved-memory" {
        for child in node.children() {
            for r in regs(&child, node.cell_sizes(), path) {
                info.reserved.push(r);
            }
        }
        return;
    }
    if node.name == "psci" || is_compatible(compat, &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]) {
        info.psci = match node.property("method").and_then(|p| p.as_str()) {
            Some("hvc") => Some(PsciConduit::Hvc),
            Some("smc") => Some(PsciConduit::Smc),
            _ => None,
        };
        return;
    }
    if !props.enabled {
        return;
    }
    if device_type == Some("cpu") {
        let method = node.property("enable-method").and_then(|p| p.as_str());
        let release = node.property("cpu-release-addr").and_then(|p| be_uint(p.value));
        let id = node.property("reg").and_then(|p| be_uint(p.value));
        if let (Some("spin-table"), Some(addr), Some(1..)) = (method, release, id) {
            info.spin_table.push(Region { base: addr, size: 8 });
        }
        if let Some(id) = id {
            let spin = (method == Some("spin-table")).then_some(release).flatten();
            info.cpus.push(id, spin.unwrap_or(0));
        }
        return;
    }
    if is_compatible(compat, &["arm,armv8-timer"]) {
        // interrupts = <secure-phys, phys, virt, hyp>, three cells each; PPIs start at 16.
        if let Some(irq) = node.property("interrupts").and_then(|p| p.value.get(24..36)) {
            if irq[..4] == [0, 0, 0, 1] {
                if let Some(n) = be_uint(&irq[4..8]) {
                    info.timer_intid = 16 + n as u32;
                }
            }
        }
    } else if is_compatible(compat, &["arm,pl011"]) && info.uart.is_none() {
        info.uart = first_reg(node, cells, path);
        info.uart_intid = spi_intid(node);
    } else if is_compatible(compat, &["arm,cortex-a15-gic", "arm,gic-400"]) {
        let mut r = regs(node, cells, path);
        if let (Some(d), Some(c)) = (r.next(), r.next()) {
            info.gic = Some(Gic::V2 { dist: d.base, cpu: c.base });
        }
    } else if is_compatible(compat, &["arm,gic-v3"]) {
        let mut r = regs(node, cells, path);
        if let (Some(d), Some(rd)) = (r.next(), r.next()) {
            info.gic = Some(Gic::V3 { dist: d.base, redist: rd.base });
        }
    } else if is_compatible(compat, &["virtio,mmio"]) {
        if let Some(r) = first_reg(node, cells, path) {
            let i = info.virtio_mmio.as_slice().len();
            if r.size != 0 && info.virtio_mmio.push(r) {
                info.virtio_intids[i] = spi_intid(node).unwrap_or(0);
            }
        }
    } else if is_compatible(compat, &["brcm,bcm2711-emmc2"]) {
        info.sdhci_emmc2 = first_reg(node, cells, path);
    } else if is_compatible(compat, &["brcm,bcm2835-sdhci"]) {
        info.sdhci_legacy = first_reg(node, cells, path);
    } else if is_compatible(compat, &["brcm,bcm2835-mbox"]) {
        info.mailbox = first_reg(node, cells, path);
    } else if is_compatible(compat, &["brcm,bcm2711-pm", "brcm,bcm2835-pm-wdt", "brcm,bcm2835-pm"]) {
        info.watchdog = first_reg(node, cells, path);
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
