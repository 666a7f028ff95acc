//! A block device that loses power: it counts writes, dies at the Nth, and then produces the
//! image a real card could hold afterwards (torn or reordered unflushed writes).

use super::Rng;
use exo_lfs::{BlockDevice, IoError, MemDevice, SECTOR};

/// What the medium keeps of the writes not yet covered by a flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// None of them.
    All,
    /// All but the last, in order; the last (in flight) keeps a random subset of sectors.
    TornLast,
    /// Each independently: absent, whole, or a random subset of its sectors.
    Reordered,
}

pub struct FaultDev {
    pub durable: Vec<u8>,
    pub volatile: Vec<u8>,
    pending: Vec<(u64, Vec<u8>)>,
    pub writes: u64,
    pub cut_at: Option<u64>,
    pub dead: bool,
}

impl FaultDev {
    pub fn new(image: Vec<u8>, cut_at: Option<u64>) -> FaultDev {
        FaultDev {
            durable: image.clone(),
            volatile: image,
            pending: Vec::new(),
            writes: 0,
            cut_at,
            dead: false,
        }
    }

    /// The image after power loss, per `loss`.
    pub fn crash(&self, loss: Loss, rng: &mut Rng) -> MemDevice {
        let mut img = self.durable.clone();
        let n = self.pending.len();
        for (i, (sector, data)) in self.pending.iter().enumerate() {
            let sectors = data.len() / SECTOR;
            let keep: Vec<bool> = match loss {
                Loss::All => vec![false; sectors],
                Loss::TornLast if i + 1 < n => vec![true; sectors],
                Loss::TornLast => (0..sectors).map(|_| rng.chance(50)).collect(),
                Loss::Reordered => match rng.below(3) {
                    0 => vec![false; sectors],
                    1 => vec![true; sectors],
                    _ => (0..sectors).map(|_| rng.chance(50)).collect(),
                },
            };
            for (k, &yes) in keep.iter().enumerate() {
                if yes {
                    let at = (*sector as usize + k) * SECTOR;
                    img[at..at + SECTOR].copy_from_slice(&data[k * SECTOR..(k + 1) * SECTOR]);
                }
            }
        }
        MemDevice { data: img }
    }
}

impl BlockDevice for FaultDev {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if self.dead {
            return Err(IoError { code: -5 });
        }
        let at = sector as usize * SECTOR;
        buf.copy_from_slice(self.volatile.get(at..at + buf.len()).ok_or(IoError { code: -22 })?);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        if self.dead {
            return Err(IoError { code: -5 });
        }
        self.writes += 1;
        self.pending.push((sector, buf.to_vec()));
        if Some(self.writes) == self.cut_at {
            self.dead = true;
            return Err(IoError { code: -5 });
        }
        let at = sector as usize * SECTOR;
        self.volatile[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        if self.dead {
            return Err(IoError { code: -5 });
        }
        for (sector, data) in self.pending.drain(..) {
            let at = sector as usize * SECTOR;
            self.durable[at..at + data.len()].copy_from_slice(&data);
        }
        Ok(())
    }
    fn sectors(&self) -> u64 {
        (self.volatile.len() / SECTOR) as u64
    }
}
