//! fbdemo: draws the frame table by owner and the disk's sector bindings on the screen,
//! refreshed every second, until a key is pressed (or for `fbdemo N`, N refreshes). Run
//! it from the shell (`run fbdemo`), which hands it the screen; on a board without one
//! (QEMU virt) it says so and ends.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

use exo_apps::picture::{self, Picture};
use exo_libos::screen::Screen;
use exo_libos::{fd, println, sys, vm};

fn main(args: &str) -> i32 {
    let limit = args.split_whitespace().find_map(|w| w.parse::<u64>().ok()).unwrap_or(0);
    let screen = match Screen::map() {
        Ok(s) => s,
        Err(e) => {
            println!("fbdemo: {}", picture::why_not(e));
            return if e == exo_libos::abi::Error::NotFound { 0 } else { 1 };
        }
    };
    println!(
        "fbdemo: drawing on the {}x{} screen, every second; any key stops it",
        screen.width, screen.height
    );
    if screen.width < picture::MIN_WIDTH || screen.height < picture::MIN_HEIGHT {
        println!("fbdemo: the {}x{} screen is too small for the picture", screen.width, screen.height);
        return 1;
    }
    let mut pic = Picture::new(screen);
    let hz = vm::kinfo().counter_hz.max(1);
    let mut next = sys::now();
    loop {
        pic.refresh();
        if limit != 0 && pic.refreshes >= limit {
            break;
        }
        next += hz;
        // Wait for the next second, or a key (a bounded wait: the counter always moves).
        while sys::now() < next {
            if fd::key(fd::STDIN).is_some() {
                println!("fbdemo: stopped after {} refreshes", pic.refreshes);
                return 0;
            }
            sys::yield_now();
        }
    }
    println!("fbdemo: stopped after {} refreshes", pic.refreshes);
    0
}

exo_libos::entry!(main);
