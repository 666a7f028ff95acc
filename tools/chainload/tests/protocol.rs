//! Both ends of the chainload protocol against each other, on a simulated wire that
//! corrupts, drops, inserts and truncates. The loader's end is the code the board runs.

mod sim;

use exo_chainload::host::{self, Observer, Options, SendError};
use exo_chainload::target::{self, LoadError, Loaded, Timing};
use exo_chainload::wire::{ErrorCode, Header};
use exo_chainload::Link;
use exo_format::crc32::crc32;
use sim::{clean, run_loader, wire, Fault};

const T: Timing = Timing::DEFAULT;
const O: Options = Options::DEFAULT;

/// What both ends saw.
struct Outcome {
    host: Result<u32, SendError>,
    /// Every transfer the loader served, in order.
    loader: Vec<Result<Loaded, LoadError>>,
    /// The loader's memory after the last transfer.
    memory: Vec<u8>,
    watched: Watch,
}

#[derive(Default)]
struct Watch {
    resends: Vec<u32>,
    retries: u32,
    last_progress: (usize, usize),
    text: Vec<u8>,
}

impl Observer for Watch {
    fn progress(&mut self, done: usize, total: usize) {
        assert!(done >= self.last_progress.0 || done <= O.chunk as usize, "progress went backwards");
        self.last_progress = (done, total);
    }
    fn text(&mut self, b: u8) {
        self.text.push(b);
    }
    fn retry(&mut self, _: &SendError, _: u32) {
        self.retries += 1;
    }
    fn resend(&mut self, index: u32) {
        self.resends.push(index);
    }
}

fn image(len: usize) -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Runs a loader with `capacity` bytes of memory against `host`, which drives its end.
fn run_with(
    capacity: usize,
    faults: (Fault, Fault),
    host: impl FnOnce(&mut sim::End, &mut Watch) -> Result<u32, SendError>,
) -> Outcome {
    let (mut h, mut l) = wire(faults.0, faults.1);
    let loader = std::thread::spawn(move || {
        let mut memory = vec![0u8; capacity];
        let mut served = Vec::new();
        run_loader(|| loop {
            let r = target::serve(&mut l, &mut memory, &T);
            let done = r.is_ok();
            served.push(r);
            if done {
                break;
            }
        });
        drop(l);
        (served, memory)
    });
    let mut watched = Watch::default();
    let result = host(&mut h, &mut watched);
    h.hang_up();
    let (loader, memory) = loader.join().unwrap();
    Outcome { host: result, loader, memory, watched }
}

fn run(img: &[u8], capacity: usize, faults: (Fault, Fault)) -> Outcome {
    run_with(capacity, faults, |h, w| host::send(h, img, &O, w))
}

/// The loader took exactly `img`: one good transfer, last, and the bytes in memory.
fn assert_loaded(o: &Outcome, img: &[u8]) {
    assert_eq!(o.host, Ok(crc32(img)), "host: {:?}", o.host);
    assert_eq!(o.loader.last(), Some(&Ok(Loaded { size: img.len(), crc: crc32(img) })));
    assert_eq!(&o.memory[..img.len()], img);
    assert_eq!(o.watched.last_progress, (img.len(), img.len()));
}

/// The loader never accepted anything.
fn assert_never_loaded(o: &Outcome) {
    assert!(o.loader.iter().all(|r| r.is_err()), "the loader accepted a transfer: {:?}", o.loader);
}

#[test]
fn clean_transfers_of_every_awkward_size() {
    for len in [1, 63, 64, 65, 1023, 1024, 1025, 4096, 100_000] {
        let img = image(len);
        let o = run(&img, 1 << 20, (clean(), clean()));
        assert_loaded(&o, &img);
        assert!(o.watched.resends.is_empty() && o.watched.retries == 0);
        assert_eq!(o.loader.len(), 1);
    }
}

#[test]
fn a_flipped_bit_in_a_chunk_is_sent_again() {
    let img = image(10_000);
    // Byte 20 + 3 * 1032 + 100 is in chunk 3's payload (header 20, frames of 4 + 1024 + 4).
    let hit = 20 + 3 * 1032 + 100;
    let o = run(&img, 1 << 20, (Box::new(move |i, b| vec![if i == hit { b ^ 0x10 } else { b }]), clean()));
    assert_loaded(&o, &img);
    assert_eq!(o.watched.resends, vec![3]);
}

#[test]
fn dropped_and_inserted_bytes_are_recovered() {
    let img = image(5000);
    let drop_at = 20 + 1032 + 500;
    let o = run(&img, 1 << 20, (Box::new(move |i, b| if i == drop_at { vec![] } else { vec![b] }), clean()));
    assert_loaded(&o, &img);
    assert_eq!(o.watched.resends, vec![1]);

    let extra_at = 20 + 2 * 1032 + 7;
    let o = run(
        &img,
        1 << 20,
        (Box::new(move |i, b| if i == extra_at { vec![b, 0x55] } else { vec![b] }), clean()),
    );
    assert_loaded(&o, &img);
    assert_eq!(o.watched.resends, vec![2]);
}

#[test]
fn a_lost_acknowledgement_is_answered_again() {
    let img = image(3000);
    // Damage the loader's second frame after `G`: the `A` for chunk 1.
    let loader_fault: Fault = {
        let mut frames = 0;
        Box::new(move |_, b| {
            if b == b'[' {
                frames += 1;
            }
            vec![if frames == 4 && b == b'A' { b'?' } else { b }]
        })
    };
    let o = run(&img, 1 << 20, (clean(), loader_fault));
    assert_loaded(&o, &img);
    assert_eq!(o.watched.resends, vec![1]);
}

#[test]
fn a_chunk_damaged_every_time_makes_the_loader_give_up_and_wait_again() {
    let img = image(4000);
    // Byte 10 of every chunk frame is flipped, on every copy: chunk 0 never gets through.
    let mut in_frame = 0usize;
    let mut sent = 0usize;
    let fault: Fault = Box::new(move |_, b| {
        sent += 1;
        in_frame += 1;
        let out = if sent > 20 && in_frame == 10 { b ^ 0xff } else { b };
        if sent == 20 || in_frame == 1032 {
            in_frame = 0;
        }
        vec![out]
    });
    let o = run(&img, 1 << 20, (fault, clean()));
    assert_never_loaded(&o);
    assert!(o.loader.iter().any(|r| matches!(r, Err(LoadError::BadChunks { index: 0 }))), "{:?}", o.loader);
    assert_eq!(o.host, Err(SendError::Refused(ErrorCode::BadChunks)));
    assert_eq!(o.watched.retries, O.attempts - 1);
}

#[test]
fn a_truncated_transfer_is_refused_and_the_loader_keeps_waiting() {
    let img = image(50_000);
    // The host goes quiet for good after 20 000 bytes (cable pulled, host killed).
    let o = run(&img, 1 << 20, (Box::new(|i, b| if i < 20_000 { vec![b] } else { vec![] }), clean()));
    assert_never_loaded(&o);
    assert!(matches!(o.host, Err(SendError::NoReply { .. })), "{:?}", o.host);
    let stalled = o.loader.iter().find(|r| r.is_err()).unwrap();
    assert!(matches!(stalled, Err(LoadError::Stalled { received, size: 50_000 }) if *received < 20_000));

    // A lying host: the header promises 50 000 bytes, the chunks hold 30 000. Afterwards an
    // honest transfer on the same wire succeeds: the loader went back to waiting.
    let short = img[..30_000].to_vec();
    let o = run_with(1 << 20, (clean(), clean()), |h, w| {
        let header = Header { size: 50_000, crc: crc32(&img), chunk: 1024 };
        let mut ep = host::Endpoint { link: h, scan: Default::default(), obs: w };
        ep.wait_ready(10_000)?;
        let lie = ep.transfer(&short, &header, &O);
        assert!(
            matches!(lie, Err(SendError::TooManyResends { index: 29 } | SendError::Refused(_))),
            "{lie:?}"
        );
        host::send(h, &img, &O, w)
    });
    assert!(matches!(o.loader[0], Err(LoadError::BadChunks { index: 29 } | LoadError::Stalled { .. })));
    assert_loaded(&o, &img);
}

#[test]
fn oversized_images_are_refused_before_and_after_the_header() {
    let img = image(5000);
    // The host reads the loader's capacity from `R` and does not even try.
    let o = run(&img, 4096, (clean(), clean()));
    assert_eq!(o.host, Err(SendError::TooBig { size: 5000, capacity: 4096 }));
    assert_never_loaded(&o);
    // A host that sends the header anyway is refused by the loader.
    let o = run_with(4096, (clean(), clean()), |h, w| {
        let mut ep = host::Endpoint { link: h, scan: Default::default(), obs: w };
        ep.wait_ready(10_000)?;
        ep.transfer(&img, &Header { size: 5000, crc: crc32(&img), chunk: 1024 }, &O)
    });
    assert_eq!(o.host, Err(SendError::Refused(ErrorCode::TooBig)));
    assert_eq!(o.loader[0], Err(LoadError::TooBig { needs: 5000, capacity: 4096 }));
}

#[test]
fn a_kernel_whose_memory_footprint_does_not_fit_is_refused_after_the_first_chunk() {
    // An arm64 Image header saying the kernel needs 2 MiB once running (BSS, stack).
    let mut img = image(8000);
    img[16..24].copy_from_slice(&(2u64 << 20).to_le_bytes());
    img[56..60].copy_from_slice(b"ARM\x64");
    let o = run(&img, 1 << 20, (clean(), clean()));
    assert_eq!(o.host, Err(SendError::Refused(ErrorCode::TooBig)));
    assert_eq!(o.loader[0], Err(LoadError::TooBig { needs: 2 << 20, capacity: 1 << 20 }));
    assert_eq!(o.watched.last_progress.0, 0, "nothing past the first chunk was confirmed");
    // The same header with room enough loads.
    let o = run(&img, 3 << 20, (clean(), clean()));
    assert_loaded(&o, &img);
}

#[test]
fn a_corrupt_header_or_a_wrong_image_crc_never_boots() {
    let img = image(3000);
    // Flip a bit of the size field: the header's own CRC catches it.
    let o = run(&img, 1 << 20, (Box::new(|i, b| vec![if i == 9 { b ^ 1 } else { b }]), clean()));
    assert_eq!(o.loader[0], Err(LoadError::BadHeader));
    assert_eq!(o.watched.retries, 1);
    assert_loaded(&o, &img); // the retry went through

    // A header whose image CRC is wrong (but self-consistent): every chunk is intact, the
    // image is not, and the loader says so instead of jumping.
    let o = run_with(1 << 20, (clean(), clean()), |h, w| {
        let mut ep = host::Endpoint { link: h, scan: Default::default(), obs: w };
        ep.wait_ready(10_000)?;
        ep.transfer(&img, &Header { size: 3000, crc: crc32(&img) ^ 1, chunk: 1024 }, &O)
    });
    assert_eq!(o.host, Err(SendError::Refused(ErrorCode::ImageCrc)));
    assert_eq!(o.loader[0], Err(LoadError::ImageCrc { expected: crc32(&img) ^ 1, actual: crc32(&img) }));
    assert_never_loaded(&o);
}

#[test]
fn an_incomplete_header_and_a_foreign_version_are_refused() {
    let img = image(100);
    let o = run_with(1 << 20, (clean(), clean()), |h, w| {
        let mut ep = host::Endpoint { link: h, scan: Default::default(), obs: w };
        ep.wait_ready(10_000)?;
        ep.link.send(&Header { size: 100, crc: crc32(&img), chunk: 64 }.encode()[..12]);
        assert_eq!(ep.wait_ready(10_000), Ok(1 << 20));
        let mut v2 = Header { size: 100, crc: crc32(&img), chunk: 64 }.encode();
        v2[4] = 2;
        let c = crc32(&v2[..16]).to_le_bytes();
        v2[16..].copy_from_slice(&c);
        ep.link.send(&v2);
        ep.wait_ready(10_000)
    });
    assert_eq!(o.loader[..2], [Err(LoadError::BadHeader), Err(LoadError::Version)]);
    assert_eq!(o.host, Ok(1 << 20));
    assert_never_loaded(&o);
}

#[test]
fn the_host_reports_a_silent_port_and_shows_loader_text() {
    let (mut h, mut l) = wire(clean(), clean());
    l.go_silent();
    let mut w = Watch::default();
    let opts = Options { ready_ms: 5000, ..O };
    let started = h.now();
    assert_eq!(host::send(&mut h, b"kernel", &opts, &mut w), Err(SendError::NoLoader));
    assert!(h.now() - started >= 5000);

    // Noise before the loader's first frame (firmware chatter, its banner) reaches the
    // observer as text; frames do not.
    let img = image(2000);
    let noisy: Fault =
        Box::new(|i, b| if i == 0 { [&b"boot noise [ex\n"[..], &[b]].concat() } else { vec![b] });
    let o = run_with(1 << 20, (clean(), noisy), |h, w| host::send(h, &img, &O, w));
    assert_loaded(&o, &img);
    assert_eq!(String::from_utf8_lossy(&o.watched.text), "boot noise [ex\n");
}

#[test]
fn a_line_that_never_falls_silent_does_not_hold_the_host_forever() {
    // Not a loader: something that talks without pause (a running kernel, a wrong baud rate).
    let (mut h, mut l) = wire(clean(), clean());
    let talker = std::thread::spawn(move || {
        let mut sent = 0usize;
        while !l.peer_gone() {
            if l.unread_by_peer() < 4096 {
                l.send(b"[exo? not a frame ] 0123456789 ");
                sent += 32;
            } else {
                std::thread::yield_now();
            }
        }
        sent
    });
    let mut w = Watch::default();
    let opts = Options { ready_ms: 3000, ..O };
    assert_eq!(host::send(&mut h, b"kernel", &opts, &mut w), Err(SendError::NoLoader));
    h.hang_up();
    let sent = talker.join().unwrap();
    // About three seconds' worth of a 115200-baud line, then it gave up.
    assert!(w.text.len() >= 3 * host::BYTES_PER_SECOND, "gave up after {} bytes", w.text.len());
    assert!(sent < 3 * host::BYTES_PER_SECOND + 8192, "read {sent} bytes");
}
