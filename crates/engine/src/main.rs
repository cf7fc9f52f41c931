//! `mpx-engine`: what mpirun starts, one per rank.

fn main() {
    std::process::exit(mpx_engine::args::run_command(std::env::args_os().skip(1)));
}
