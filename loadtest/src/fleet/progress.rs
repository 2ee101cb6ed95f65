//! Progress bars for the long parts of a run (opening many connections, a
//! timed phase), drawn on stderr with indicatif, and hidden when stderr is not
//! a terminal, so logs and CI output stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

fn bar(len: u64, template: &str, message: String) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    // The templates are constants; a bad one would only lose the styling.
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    bar
}

/// Counts up to `len` things (connections opened).
pub fn counter(len: u64, message: impl Into<String>) -> ProgressBar {
    bar(
        len,
        "{msg:>24} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {elapsed})",
        message.into(),
    )
}

/// Fills over `duration`; the caller moves it with [`tick`].
pub fn timer(duration: Duration, message: impl Into<String>) -> ProgressBar {
    let ms = u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    bar(
        ms,
        "{msg:>24} [{bar:40}] {elapsed}/{duration}",
        message.into(),
    )
}

/// Moves a timer bar to `elapsed`.
pub fn tick(bar: &ProgressBar, elapsed: Duration) {
    bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_count_and_time() {
        // Under `cargo test` stderr is usually not a terminal: the bars are
        // hidden, but they still count.
        let c = counter(10, "opening");
        c.inc(3);
        assert_eq!(c.position(), 3);
        assert_eq!(c.length(), Some(10));
        let t = timer(Duration::from_secs(2), "max");
        tick(&t, Duration::from_millis(500));
        assert_eq!(t.position(), 500);
        assert_eq!(t.length(), Some(2000));
        t.finish_and_clear();
    }
}
