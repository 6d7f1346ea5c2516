//! Progress on stderr: an indicatif bar per phase when stderr is a terminal (or
//! `--progress always`), otherwise one line per finished phase.

use std::io::{self, IsTerminal, Write};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use super::options::ProgressMode;

/// Writes straight to stderr with ANSI cursor moves: lets `--progress always` draw even when
/// stderr is not a terminal (indicatif hides its own stderr target then).
#[derive(Debug)]
struct RawStderr;

impl TermLike for RawStderr {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        if n > 0 {
            write!(io::stderr(), "\x1b[{n}A")?;
        }
        Ok(())
    }
    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        if n > 0 {
            write!(io::stderr(), "\x1b[{n}B")?;
        }
        Ok(())
    }
    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        if n > 0 {
            write!(io::stderr(), "\x1b[{n}C")?;
        }
        Ok(())
    }
    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        if n > 0 {
            write!(io::stderr(), "\x1b[{n}D")?;
        }
        Ok(())
    }
    fn write_line(&self, s: &str) -> io::Result<()> {
        writeln!(io::stderr(), "{s}")
    }
    fn write_str(&self, s: &str) -> io::Result<()> {
        write!(io::stderr(), "{s}")
    }
    fn clear_line(&self) -> io::Result<()> {
        write!(io::stderr(), "\r\x1b[2K")
    }
    fn flush(&self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// The progress of the current phase.
pub(super) struct Progress {
    draw: Option<bool>,
    bar: Option<ProgressBar>,
    phase: String,
    started: Instant,
    quiet: bool,
}

impl Progress {
    pub(super) fn new(mode: ProgressMode) -> Progress {
        let draw = match mode {
            ProgressMode::Never => None,
            ProgressMode::Auto if !io::stderr().is_terminal() => None,
            ProgressMode::Auto => Some(false),
            ProgressMode::Always => Some(!io::stderr().is_terminal()),
        };
        Progress {
            draw,
            bar: None,
            phase: String::new(),
            started: Instant::now(),
            quiet: false,
        }
    }

    /// A progress that shows nothing, not even the phase lines.
    pub(super) fn silent() -> Progress {
        Progress {
            draw: None,
            bar: None,
            phase: String::new(),
            started: Instant::now(),
            quiet: true,
        }
    }

    /// Starts a phase of `len` steps (users, tenths of seconds).
    pub(super) fn phase(&mut self, name: &str, len: Option<u64>) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        self.phase = name.to_string();
        self.started = Instant::now();
        if let Some(raw) = self.draw {
            let target = if raw {
                ProgressDrawTarget::term_like_with_hz(Box::new(RawStderr), 10)
            } else {
                ProgressDrawTarget::stderr_with_hz(10)
            };
            let bar = ProgressBar::with_draw_target(len, target);
            if let Ok(style) =
                ProgressStyle::with_template("{prefix:>14} [{bar:25}] {pos}/{len} {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(name.to_string());
            self.bar = Some(bar);
        }
    }

    /// Updates the position and message.
    pub(super) fn set(&mut self, pos: u64, msg: String) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(msg);
        }
    }

    /// Ends the phase with a one-line result (kept on screen, or printed as a line).
    pub(super) fn done(&mut self, line: String) {
        let secs = self.started.elapsed().as_secs_f64();
        match self.bar.take() {
            Some(b) => {
                b.finish_and_clear();
                eprintln!("{:>14}: {line} ({secs:.1} s)", self.phase);
            }
            None if self.quiet => {}
            None => eprintln!("loadgen {}: {line} ({secs:.1} s)", self.phase),
        }
    }
}
