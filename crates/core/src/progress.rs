//! The one progress reporter of labelgan's long jobs: a bar with rate and ETA
//! ([indicatif](https://docs.rs/indicatif)) when stderr is a terminal, and a plain line
//! every few seconds (and at the end) when it is not, so that logs of a background run
//! still show how far it is.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Seconds between plain lines when stderr is not a terminal.
pub const LINE_INTERVAL: Duration = Duration::from_secs(10);

/// A count of `total` things (images, steps) done so far, with rate and ETA.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    label: String,
    unit: String,
    /// `None` when drawing a bar; otherwise the last plain line's time and count.
    last_line: Option<Mutex<(Instant, Option<u64>)>>,
}

impl Progress {
    /// A reporter for `total` `unit`s (e.g. "images") under `label`.
    pub fn new(total: u64, label: &str, unit: &str) -> Self {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        let tty = !bar.is_hidden();
        if let Ok(style) = ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit} | {{per_sec}} | ETA {{eta}} {{msg}}"
        )) {
            bar.set_style(style.progress_chars("#>-"));
        }
        bar.set_prefix(label.to_string());
        Self {
            bar,
            label: label.to_string(),
            unit: unit.to_string(),
            last_line: (!tty).then(|| Mutex::new((Instant::now(), None))),
        }
    }

    /// Sets how many are done (a resumed run starts above 0).
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
        self.maybe_line(false);
    }

    /// Starts from `done` already done (a resumed job): rate and ETA count only what
    /// happens from here on.
    pub fn resume_at(&self, done: u64) {
        self.bar.set_position(done);
        self.bar.reset_eta();
    }

    /// Adds `n` to the count.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.maybe_line(false);
    }

    /// A short note shown after the bar (and in plain lines), e.g. the loss.
    pub fn note(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    /// A log line above the bar (or a plain line).
    pub fn println(&self, line: &str) {
        if self.last_line.is_some() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Items per second so far.
    pub fn rate(&self) -> f64 {
        self.bar.per_sec()
    }

    /// Ends the bar, leaving its last state on screen (one final plain line otherwise).
    pub fn finish(&self) {
        if self.last_line.is_some() {
            self.maybe_line(true);
        }
        self.bar.finish();
    }

    fn maybe_line(&self, force: bool) {
        let Some(last) = &self.last_line else { return };
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let due = force || last.0.elapsed() >= LINE_INTERVAL || done == total;
        // A count already printed is not printed again (the last one, then `finish`).
        if due && last.1 != Some(done) {
            *last = (Instant::now(), Some(done));
            eprintln!("{}", self.line());
        }
    }

    /// The plain line: `label: done/total unit, rate/s, ETA s [note]`.
    pub fn line(&self) -> String {
        let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let msg = self.bar.message();
        format!(
            "{}: {done}/{total} {}, {:.2}/s, ETA {:.0} s{}{}",
            self.label,
            self.unit,
            self.bar.per_sec(),
            self.bar.eta().as_secs_f64(),
            if msg.is_empty() { "" } else { ", " },
            msg
        )
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_formats_a_line() {
        let p = Progress::new(10, "generating", "images");
        p.set(3);
        p.inc(2);
        p.note("loss 0.5");
        let l = p.line();
        assert!(l.starts_with("generating: 5/10 images"), "{l}");
        assert!(l.ends_with(", loss 0.5"), "{l}");
        p.finish();
    }
}
