//! Progress bars for long work (importing a big bundle, catching up with peers), drawn on
//! stderr only when a person watches it: never in `--json` output, pipes or logs.

use std::cell::OnceCell;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `what` (e.g. "envelopes"), drawn from the first report on (not over a passphrase
/// prompt that may come before), and cleared when dropped.
pub struct Bar {
    style: Option<ProgressStyle>,
    bar: OnceCell<ProgressBar>,
}

impl Bar {
    pub fn new(label: &str, what: &str, json: bool) -> Bar {
        let style = (!json && std::io::stderr().is_terminal()).then(|| {
            let template = format!("{label} [{{bar:32}}] {{pos}}/{{len}} {what} ({{eta}} left)");
            ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> ")
        });
        Bar { style, bar: OnceCell::new() }
    }

    pub fn set(&self, done: usize, total: usize) {
        let Some(style) = &self.style else { return };
        let bar = self.bar.get_or_init(|| {
            let bar = ProgressBar::new(total as u64).with_style(style.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
