//! The `pgstack-gen` binary; all the work is in [`pgstack_gen::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = pgstack_gen::cli::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
