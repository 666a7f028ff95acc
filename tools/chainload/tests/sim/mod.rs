//! A simulated UART for protocol tests: two threads, one per end, on a wire that can damage
//! bytes, with a virtual clock. Time moves only when both ends wait for input and nothing is
//! in flight; then it jumps to the nearest deadline. So timeouts of seconds cost no wall
//! time, and a run does the same thing every time, however busy the machine is.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};

use exo_chainload::Link;

/// What happens to each byte one end sends: its position in that end's output (from 0) and
/// value go in, the bytes that reach the other end come out.
pub type Fault = Box<dyn FnMut(usize, u8) -> Vec<u8> + Send>;

#[derive(Default)]
struct World {
    now: u64,
    inbox: [VecDeque<u8>; 2],
    /// Each end's deadline while it waits in `recv`; `u64::MAX` once it has finished.
    waiting: [Option<u64>; 2],
}

pub struct End {
    world: Arc<(Mutex<World>, Condvar)>,
    me: usize,
    sent: usize,
    fault: Fault,
}

/// The two ends of a fresh wire: (host, loader).
pub fn wire(host_fault: Fault, loader_fault: Fault) -> (End, End) {
    let world = Arc::new((Mutex::new(World::default()), Condvar::new()));
    let end = |me, fault| End { world: world.clone(), me, sent: 0, fault };
    (end(0, host_fault), end(1, loader_fault))
}

/// Unwinds a loader thread whose host has gone (see [`run_loader`]).
pub struct Gone;

/// Runs `f` (a loader serving transfers in a loop) until its host hangs up.
pub fn run_loader(f: impl FnOnce()) {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Gone>() {
                default(info)
            }
        }));
    });
    if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        if !p.is::<Gone>() {
            std::panic::resume_unwind(p);
        }
    }
}

pub fn clean() -> Fault {
    Box::new(|_, b| vec![b])
}

impl End {
    /// Marks this end as gone, so the other end's waits run out instead of blocking.
    pub fn hang_up(&mut self) {
        let (lock, cv) = &*self.world;
        lock.lock().unwrap().waiting[self.me] = Some(u64::MAX);
        cv.notify_all();
    }

    /// Makes this end a peer that never says anything (and is never done).
    pub fn go_silent(&mut self) {
        let (lock, cv) = &*self.world;
        lock.lock().unwrap().waiting[self.me] = Some(u64::MAX - 1);
        cv.notify_all();
    }

    /// Whether the other end has hung up.
    pub fn peer_gone(&self) -> bool {
        self.world.0.lock().unwrap().waiting[1 - self.me] == Some(u64::MAX)
    }

    /// Bytes sent to the other end and not yet read.
    pub fn unread_by_peer(&self) -> usize {
        self.world.0.lock().unwrap().inbox[1 - self.me].len()
    }

    /// Virtual milliseconds since the wire was made.
    pub fn now(&self) -> u64 {
        self.world.0.lock().unwrap().now
    }
}

impl Drop for End {
    fn drop(&mut self) {
        self.hang_up();
    }
}

impl Link for End {
    fn send(&mut self, bytes: &[u8]) {
        let (lock, cv) = &*self.world;
        let mut w = lock.lock().unwrap();
        for &b in bytes {
            let out = (self.fault)(self.sent, b);
            self.sent += 1;
            w.inbox[1 - self.me].extend(out);
        }
        cv.notify_all();
    }

    fn recv(&mut self, timeout_ms: u32) -> Option<u8> {
        let (lock, cv) = &*self.world;
        let mut w = lock.lock().unwrap();
        let deadline = w.now + timeout_ms as u64;
        let other = 1 - self.me;
        loop {
            if let Some(b) = w.inbox[self.me].pop_front() {
                w.waiting[self.me] = None;
                return Some(b);
            }
            if w.waiting[other] == Some(u64::MAX) {
                // The other end is gone for good: a loader would wait forever; stop it here.
                drop(w);
                std::panic::panic_any(Gone);
            }
            if w.now >= deadline {
                w.waiting[self.me] = None;
                return None;
            }
            w.waiting[self.me] = Some(deadline);
            // Both ends idle and nothing on the wire: let time pass.
            // (When their deadline has already passed, they are about to wake: wait for that.)
            if let Some(theirs) = w.waiting[other] {
                let next = deadline.min(theirs);
                if w.inbox[other].is_empty() && next > w.now {
                    w.now = next;
                    cv.notify_all();
                    continue;
                }
            }
            w = cv.wait(w).unwrap();
        }
    }
}
