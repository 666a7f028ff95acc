//! The partition block device: offsets, bounds, bounce buffer and batching, both traits.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_libos::fs::disk::{
    BlockDevice, IoError, IoStats, Partition, BOUNCE_SECTORS, MAX_TRANSFER, OUT_OF_RANGE,
};

/// A disk that behaves like the kernel: refuses unaligned buffers and over-long transfers,
/// and records every call.
struct Strict {
    data: Vec<u8>,
    calls: Vec<(char, u64, usize)>,
}

impl Strict {
    fn new(sectors: usize) -> Strict {
        Strict {
            data: (0..sectors * 512).map(|i| (i / 512) as u8 ^ (i % 251) as u8).collect(),
            calls: Vec::new(),
        }
    }
    fn check(&self, sector: u64, buf: *const u8, len: usize) -> Result<(), IoError> {
        let n = len / 512;
        if !(buf as usize).is_multiple_of(512) || !len.is_multiple_of(512) || n == 0 || n > MAX_TRANSFER {
            return Err(IoError { code: -1 });
        }
        if (sector as usize + n) * 512 > self.data.len() {
            return Err(IoError { code: -2 });
        }
        Ok(())
    }
}

impl BlockDevice for Strict {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.check(sector, buf.as_ptr(), buf.len())?;
        self.calls.push(('r', sector, buf.len() / 512));
        buf.copy_from_slice(&self.data[sector as usize * 512..][..buf.len()]);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.check(sector, buf.as_ptr(), buf.len())?;
        self.calls.push(('w', sector, buf.len() / 512));
        self.data[sector as usize * 512..][..buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.calls.push(('f', 0, 0));
        Ok(())
    }
    fn sectors(&self) -> u64 {
        (self.data.len() / 512) as u64
    }
}

/// A zeroed buffer with room for `n` sectors at a 512-aligned offset (and one byte more).
struct Buf(Vec<u8>, usize, usize);

impl Buf {
    fn new(n: usize) -> Buf {
        let v = vec![0u8; n * 512 + 513];
        let off = v.as_ptr().align_offset(512);
        Buf(v, off, n * 512)
    }
    /// `n` sectors at a 512-aligned address.
    fn aligned(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + self.2]
    }
    /// `n` sectors one byte past a 512-aligned address: never aligned.
    fn unaligned(&mut self) -> &mut [u8] {
        &mut self.0[self.1 + 1..self.1 + 1 + self.2]
    }
}

#[test]
fn offsets_and_bounds() {
    let p = Partition::new(Strict::new(10_000), 1000, 3000);
    assert_eq!((p.start(), p.sectors()), (1000, 3000));
    let mut buf = Buf::new(2);
    let b = buf.aligned();
    p.read(0, b).unwrap();
    assert_eq!(&b[..], &Strict::new(10_000).data[1000 * 512..1002 * 512]);
    p.read(2998, b).unwrap();
    assert_eq!(p.read(2999, b), Err(IoError { code: OUT_OF_RANGE }));
    assert_eq!(p.read(u64::MAX, b), Err(IoError { code: OUT_OF_RANGE }));
    assert_eq!(p.write(3000, &b[..512]), Err(IoError { code: OUT_OF_RANGE }));
    assert_eq!(p.read(0, &mut b[..100]), Err(IoError { code: OUT_OF_RANGE }));
    p.write(5, &[7u8; 1024]).unwrap();
    let io = p.into_inner();
    assert!(io.data[1005 * 512..1007 * 512].iter().all(|&x| x == 7));
    assert_eq!(io.data[1007 * 512], Strict::new(10_000).data[1007 * 512]);
    // Nothing outside the extent was ever asked of the device.
    assert!(io.calls.iter().all(|&(k, s, n)| k == 'f' || (s >= 1000 && s + n as u64 <= 4000)));
}

#[test]
fn aligned_buffers_go_straight_through_in_batches_of_2048() {
    let p = Partition::new(Strict::new(6000), 100, 5000);
    let mut buf = Buf::new(3000);
    let b = buf.aligned();
    p.read(10, b).unwrap();
    assert_eq!(p.stats(), IoStats { reads: 2, sectors_read: 3000, ..IoStats::default() });
    b.iter_mut().for_each(|x| *x = x.wrapping_add(1));
    p.write(10, b).unwrap();
    p.flush().unwrap();
    let st = p.stats();
    assert_eq!((st.writes, st.sectors_written, st.flushes, st.bounced), (2, 3000, 1, 0));
    let io = p.into_inner();
    assert_eq!(&io.calls[..4], &[('r', 110, 2048), ('r', 2158, 952), ('w', 110, 2048), ('w', 2158, 952)]);
    let orig = Strict::new(6000);
    assert!((110 * 512..3110 * 512).all(|i| io.data[i] == orig.data[i].wrapping_add(1)));
}

#[test]
fn unaligned_buffers_bounce() {
    let p = Partition::new(Strict::new(1000), 0, 1000);
    let mut buf = Buf::new(200);
    let view = buf.unaligned();
    p.read(3, view).unwrap();
    assert_eq!(view, &Strict::new(1000).data[3 * 512..203 * 512]);
    let st = p.stats();
    assert_eq!((st.reads, st.bounced), (200usize.div_ceil(BOUNCE_SECTORS) as u64, st.reads));
    view.iter_mut().for_each(|x| *x ^= 0xff);
    p.write(3, view).unwrap();
    let io = p.into_inner();
    let orig = Strict::new(1000);
    assert!((3 * 512..203 * 512).all(|i| io.data[i] == orig.data[i] ^ 0xff));
    assert!(io.calls.iter().all(|&(_, _, n)| n <= BOUNCE_SECTORS));
}

#[test]
fn a_partition_is_a_block_device_of_its_own_extent() {
    use exo_libos::fs::BlockDevice;
    let mut p = Partition::new(Strict::new(500), 50, 400);
    let mut b = [9u8; 512];
    BlockDevice::write(&mut p, 399, &b).unwrap();
    b = [0; 512];
    BlockDevice::read(&mut p, 399, &mut b).unwrap();
    assert_eq!(b, [9; 512]);
    assert_eq!(p.with_io(|io| io.data[449 * 512]), 9);
    assert_eq!(BlockDevice::sectors(&p), 400);
    assert!(BlockDevice::write(&mut p, 400, &b).is_err());
    BlockDevice::flush(&mut p).unwrap();
}

#[test]
fn a_vec_is_a_disk() {
    let p = Partition::new(vec![0u8; 64 * 512], 8, 56);
    p.write(0, &[1u8; 512]).unwrap();
    assert!(p.write(56, &[1u8; 512]).is_err());
    let v = p.into_inner();
    assert!(v[8 * 512..9 * 512].iter().all(|&x| x == 1) && v[..8 * 512].iter().all(|&x| x == 0));
    // A partition claiming more than the Vec holds fails at the device, not with a panic.
    let p = Partition::new(vec![0u8; 4 * 512], 0, 100);
    assert!(p.read(10, &mut [0u8; 512]).is_err());
}
