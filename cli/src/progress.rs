//! Progress bars for long work (importing a big bundle, catching up with peers), drawn on
//! stderr only when a person watches it: never in `--json` output, pipes or logs.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `what` (e.g. "envelopes"), cleared when dropped.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(label: &str, what: &str, json: bool) -> Bar {
        if json || !std::io::stderr().is_terminal() {
            return Bar { bar: None };
        }
        let bar = ProgressBar::new(0);
        let template = format!("{label} [{{bar:32}}] {{pos}}/{{len}} {what} ({{eta}} left)");
        bar.set_style(ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> "));
        bar.enable_steady_tick(Duration::from_millis(200));
        Bar { bar: Some(bar) }
    }

    pub fn set(&self, done: usize, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
