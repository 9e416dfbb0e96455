//! `hookline log export`: the delivery log as NDJSON, written as the stream
//! arrives, with progress on stderr.

use std::{
    io::{BufWriter, IsTerminal, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hookline_proto::delivery::v1 as dpb;

use super::status;

/// Write every delivery of `stream` as one JSON line to `output` (stdout
/// without one). A file is written under a `.partial` name and renamed once
/// the stream has ended well, so a failed export leaves no file that looks
/// whole.
pub async fn run(
    mut stream: tonic::Streaming<dpb::DeliveryDetail>,
    output: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    let partial = output.map(partial_name);
    let sink: Box<dyn Write + Send> = match &partial {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout()),
    };
    let mut out = BufWriter::new(sink);
    let mut progress = Progress::new(quiet);
    let written = async {
        while let Some(detail) = stream.message().await.map_err(status)? {
            serde_json::to_writer(&mut out, &detail).context("writing the export")?;
            out.write_all(b"\n").context("writing the export")?;
            progress.tick();
        }
        out.flush().context("writing the export")?;
        anyhow::Ok(())
    }
    .await;
    drop(out);
    if let Err(e) = written {
        if let Some(p) = &partial {
            let _ = std::fs::remove_file(p);
        }
        progress.end();
        return Err(e);
    }
    if let (Some(from), Some(to)) = (&partial, output) {
        std::fs::rename(from, to).with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
    }
    progress.finish(output);
    Ok(())
}

/// `FILE.partial` beside `FILE`.
fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// The count so far and the rate, on stderr: redrawn in place on a
/// terminal, a line every few seconds otherwise (a log file or a pipe), and
/// a last line with the total.
struct Progress {
    quiet: bool,
    terminal: bool,
    started: Instant,
    shown: Instant,
    count: u64,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        let now = Instant::now();
        Self { quiet, terminal: std::io::stderr().is_terminal(), started: now, shown: now, count: 0 }
    }

    fn tick(&mut self) {
        self.count += 1;
        let every = if self.terminal { Duration::from_millis(200) } else { Duration::from_secs(5) };
        if self.quiet || self.shown.elapsed() < every {
            return;
        }
        self.shown = Instant::now();
        let line = format!("exported {} deliveries so far ({:.0}/s)", self.count, self.rate());
        if self.terminal {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }

    fn rate(&self) -> f64 {
        self.count as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    /// End a line redrawn in place.
    fn end(&self) {
        if !self.quiet && self.terminal && self.count > 0 {
            eprintln!();
        }
    }

    fn finish(&self, output: Option<&Path>) {
        if self.quiet {
            return;
        }
        if self.terminal {
            eprint!("\r");
        }
        let to = output.map(|p| format!(" to {}", p.display())).unwrap_or_default();
        eprintln!(
            "exported {} deliveries{to} in {:.1} s ({:.0}/s)",
            self.count,
            self.started.elapsed().as_secs_f64(),
            self.rate()
        );
    }
}
