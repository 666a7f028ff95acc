//! Links every app with the libOS's program layout.
include!("../build_common.rs");

fn main() {
    exo_program_build();
}
