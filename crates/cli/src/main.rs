//! `mpx`: start and stop clusters, run code on engines, and the interactive console.

fn main() {
    let invocation = mpx_cli::Invocation {
        program: std::env::current_exe().map(Into::into).into_iter().collect(),
        args: std::env::args_os().skip(1).collect(),
        python: None,
    };
    std::process::exit(mpx_cli::run_command(invocation));
}
