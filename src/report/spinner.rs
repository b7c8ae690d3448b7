//! The spinner shown while portguard waits (grace periods, `wait`, escalation): a
//! one-line spinner on a terminal, nothing otherwise.
//!
//! A pre-start hook is mostly run by scripts, whose logs must not fill with
//! carriage returns; so the spinner only draws when stderr is a terminal and
//! `-q` was not given, and it erases itself when the wait is over.

use crate::act::progress::{Progress, Waiting};
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Redraw at most this often: enough to look alive, cheap on a slow terminal.
const REDRAW: Duration = Duration::from_millis(80);

/// A spinner line on stderr.
#[derive(Debug, Default)]
pub struct Spinner {
    state: Mutex<SpinnerState>,
}

#[derive(Debug, Default)]
struct SpinnerState {
    last: Option<Instant>,
    frame: usize,
    drawn: bool,
}

/// What an action waits for, in words.
pub fn waiting_words(what: Waiting<'_>) -> String {
    match what {
        Waiting::Exit { pids, escalate } => {
            let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
            match escalate {
                None => format!("waiting for pid {} to exit", pids.join(", ")),
                Some((signal, grace)) => format!(
                    "waiting for pid {} to exit ({} after {})",
                    pids.join(", "),
                    signal.unwrap_or("no escalation"),
                    humantime::format_duration(grace)
                ),
            }
        }
        Waiting::Release => "waiting for the holders to release the port".to_string(),
    }
}

/// The spinner's text for one frame.
pub fn spinner_line(
    frame: usize,
    port: u16,
    what: &str,
    elapsed: Duration,
    limit: Duration,
) -> String {
    format!(
        "{} port {port}: {what} ({:.1}s of {:.1}s)",
        FRAMES[frame % FRAMES.len()],
        elapsed.as_secs_f64(),
        limit.as_secs_f64()
    )
}

impl Progress for Spinner {
    fn enabled(&self) -> bool {
        true
    }

    fn waiting(&self, port: u16, what: Waiting<'_>, elapsed: Duration, limit: Duration) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.last.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        st.last = Some(Instant::now());
        st.frame += 1;
        st.drawn = true;
        let line = spinner_line(st.frame, port, &waiting_words(what), elapsed, limit);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    fn done(&self, _port: u16) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        if st.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            st.drawn = false;
            st.last = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_and_how_long() {
        assert_eq!(
            spinner_line(
                0,
                8787,
                "waiting for pid 4242 to exit",
                Duration::from_millis(1250),
                Duration::from_secs(3)
            ),
            "⠋ port 8787: waiting for pid 4242 to exit (1.2s of 3.0s)"
        );
        assert!(spinner_line(11, 1, "x", Duration::ZERO, Duration::ZERO).starts_with('⠙'));
        assert_eq!(
            waiting_words(Waiting::Exit {
                pids: &[4242, 4243],
                escalate: Some((Some("SIGKILL"), Duration::from_secs(3)))
            }),
            "waiting for pid 4242, 4243 to exit (SIGKILL after 3s)"
        );
    }
}
