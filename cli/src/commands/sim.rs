//! `weft sim`: the mesh simulator. Runs seeded scenarios with our routing and the baselines on
//! the same simulated radios, prints the figures, and can plot delivery over time.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use weft_core::mesh::Strategy;
use weft_core::mesh::sim::{self, Report, Scenario};

use crate::output::Output;

#[derive(Parser)]
pub struct Args {
    /// Scenario: line (10 radios in a row), grid (10 x 10), festival (200 people walking for an
    /// hour), toggle (the festival where a quarter of the people switch Bluetooth off for ten
    /// minutes), stadium (5,000 people, an hour), flood (the festival with one node writing junk
    /// ten times a second), nearby (the festival with someone posting on the nearby channel
    /// every 10 s), photos (the festival with a 256 KiB photo every 30 s beside the texts),
    /// photos-large (1 MiB photos, what the mesh's size policy keeps off), or all (line, grid
    /// and festival)
    #[arg(long, default_value = "festival")]
    scenario: String,
    /// Seed: the same seed gives the same run
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// People in the stadium scenario (its area grows with them, so the crowd stays as dense;
    /// at least 8, the largest group)
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(8..=1_000_000))]
    people: u32,
    /// Run this many seeds (from --seed on) and print each figure's mean and spread; every seed
    /// is a paired run (the same walks, groups and messages for every strategy)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    seeds: u64,
    /// Messages sent instead of the scenario's own (by random members of its groups)
    #[arg(long)]
    messages: Option<usize>,
    /// Bytes of each envelope: 256, 512, 1024, 2048, 4096, ... 65536 (the padding buckets)
    #[arg(long, default_value_t = 256)]
    envelope_bytes: usize,
    /// Bytes of others' envelopes every node carries, whatever its strategy (default: 1 MiB for
    /// ours and spray-and-wait, unbounded for epidemic)
    #[arg(long)]
    cache_bytes: Option<usize>,
    /// Strategy: weft, flood, epidemic, bloom (epidemic with a Bloom-filter summary), spray,
    /// bitchat (relay jitter, cancel on duplicate, filter sync), prophet (delivery
    /// predictabilities by topic), or all
    #[arg(long, default_value = "all")]
    strategy: String,
    /// Copies of each envelope our strategy hands out (to explore; the default is the node's)
    #[arg(long)]
    copies: Option<u16>,
    /// How many hops a fresh envelope is pushed (to explore)
    #[arg(long)]
    push_hops: Option<u8>,
    /// Radio: ideal (links come up at once, every scan finds everyone, 20 kB/s both ways),
    /// realistic (connections of 0.5 to 3 s of which one in ten fails, scans that find a
    /// neighbour half the time, writes at 4 kB/s and notifications at 10 kB/s with their
    /// headers on the air, one iPhone in five hidden in the background; docs/BENCHMARKS.md),
    /// or both
    #[arg(long, default_value = "ideal")]
    radio: String,
    /// Write a plot of delivery over time per strategy (SVG)
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

pub fn run(args: Args, out: &Output) -> Result<()> {
    let scenarios: Vec<&str> =
        if args.scenario == "all" { Scenario::NAMES.to_vec() } else { vec![args.scenario.as_str()] };
    let strategies: Vec<Strategy> = match args.strategy.as_str() {
        "all" => sim::strategies(),
        "weft" => vec![Strategy::WEFT],
        "flood" => vec![Strategy::Flood { ttl: 7 }],
        "epidemic" => vec![Strategy::Epidemic],
        "bloom" | "epidemic-bloom" => vec![Strategy::EpidemicFilter],
        "spray" => vec![Strategy::SprayAndWait { copies: 8 }],
        "bitchat" => vec![Strategy::Bitchat { ttl: 7 }],
        "prophet" => vec![Strategy::Prophet],
        other => bail!("unknown strategy {other:?}; use weft, flood, epidemic, bloom, spray, bitchat, prophet or all"),
    };
    let strategies: Vec<Strategy> = strategies
        .into_iter()
        .map(|s| match s {
            Strategy::Weft { copies, push_hops } => {
                Strategy::Weft { copies: args.copies.unwrap_or(copies), push_hops: args.push_hops.unwrap_or(push_hops) }
            }
            other => other,
        })
        .collect();
    let realistic: &[bool] = match args.radio.as_str() {
        "ideal" => &[false],
        "realistic" => &[true],
        "both" => &[false, true],
        other => bail!("unknown radio {other:?}; use ideal, realistic or both"),
    };
    let options = sim::Options { cache_bytes: args.cache_bytes };
    let mut runs = Vec::new();
    for name in scenarios {
        for &realistic in realistic {
            for seed in args.seed..args.seed + args.seeds {
                let by_name = if name == "stadium" {
                    Some(Scenario::stadium_of(args.people as usize, seed))
                } else {
                    Scenario::by_name(name, seed)
                };
                let mut scenario = by_name
                    .with_context(|| {
                        format!(
                            "unknown scenario {name:?}; use line, grid, festival, toggle, stadium, flood, nearby, photos, \
                             photos-large or all"
                        )
                    })?
                    .with_envelope_len(args.envelope_bytes)
                    .map_err(anyhow::Error::msg)?;
                if let Some(messages) = args.messages {
                    scenario = scenario.with_messages(messages, seed);
                }
                if realistic {
                    scenario = scenario.with_realistic_radio();
                }
                runs.extend(strategies.iter().map(|s| (scenario.clone(), *s, seed)));
            }
        }
    }
    let reports = run_all(&runs, &options);
    if let Some(path) = &args.plot {
        std::fs::write(path, plot(&reports)).with_context(|| format!("writing {}", path.display()))?;
    }
    out.print(&reports, || if args.seeds > 1 { summary_table(&sim::summarize(&reports)) } else { table(&reports) });
    Ok(())
}

/// Runs every (scenario, strategy, seed) two at a time (the machines this targets have two
/// cores), the reports in the order given.
fn run_all(runs: &[(Scenario, Strategy, u64)], options: &sim::Options) -> Vec<Report> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).min(runs.len()).max(1);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut reports: Vec<Option<Report>> = vec![None; runs.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((scenario, strategy, seed)) = runs.get(i) else { break done };
                        done.push((i, sim::run_with(scenario, *strategy, *seed, options)));
                    }
                })
            })
            .collect();
        for h in handles {
            for (i, r) in h.join().expect("a simulation thread panicked") {
                reports[i] = Some(r);
            }
        }
    });
    reports.into_iter().flatten().collect()
}

/// Each figure's mean ± standard deviation over the seeds, and the ratio of mean air bytes per
/// delivery against the strongest epidemic baseline (epidemic with a Bloom-filter summary).
fn summary_table(summaries: &[sim::Summary]) -> String {
    let mut text = String::new();
    let mut scenario = "";
    for s in summaries {
        if s.scenario != scenario {
            scenario = &s.scenario;
            text += &format!("\nscenario {} ({} seeds; mean ± sd)\n", s.scenario, s.seeds);
            text += &format!(
                "{:<26} {:>15} {:>15} {:>15} {:>22} {:>14} {:>10}\n",
                "strategy", "delivery", "p50 (s)", "p95 (s)", "air bytes", "air B/msg", "vs bloom"
            );
        }
        let bloom = summaries.iter().find(|b| b.scenario == s.scenario && b.strategy == "epidemic-bloom");
        let versus = bloom
            .map(|b| format!("{:.2}x", s.bytes_per_delivered.mean / b.bytes_per_delivered.mean.max(f64::MIN_POSITIVE)))
            .unwrap_or_default();
        let pm = |x: &sim::Spread, digits: usize| format!("{:.*} ± {:.*}", digits, x.mean, digits, x.sd);
        text += &format!(
            "{:<26} {:>15} {:>15} {:>15} {:>22} {:>14.0} {:>10}\n",
            s.strategy,
            pm(&s.delivery_ratio, 3),
            pm(&s.latency_p50_s, 1),
            pm(&s.latency_p95_s, 1),
            format!("{:.3e} ± {:.1e}", s.bytes_on_air.mean, s.bytes_on_air.sd),
            s.bytes_per_delivered.mean,
            versus,
        );
    }
    text
}

fn table(reports: &[Report]) -> String {
    let mut text = String::new();
    let mut scenario = "";
    for r in reports {
        if r.scenario != scenario {
            scenario = &r.scenario;
            let epidemic = reports.iter().find(|e| e.scenario == r.scenario && e.strategy == "epidemic");
            text += &format!("\nscenario {} (seed {}): {} deliveries expected\n", r.scenario, r.seed, r.expected);
            text += &format!(
                "{:<22} {:>9} {:>9} {:>9} {:>12} {:>11} {:>8}{}\n",
                "strategy",
                "delivery",
                "p50 (s)",
                "p95 (s)",
                "air B/msg",
                "peak cache",
                "wall",
                if epidemic.is_some() { "   vs epidemic: delivery, air, p50" } else { "" }
            );
        }
        let epidemic = reports.iter().find(|e| e.scenario == r.scenario && e.strategy == "epidemic");
        let versus = epidemic
            .map(|e| {
                format!(
                    "   {:.3}x  {:.3}x  {:.2}x",
                    r.delivery_ratio / e.delivery_ratio.max(f64::MIN_POSITIVE),
                    r.bytes_per_delivered / e.bytes_per_delivered.max(f64::MIN_POSITIVE),
                    r.latency_p50_s / e.latency_p50_s.max(f64::MIN_POSITIVE)
                )
            })
            .unwrap_or_default();
        text += &format!(
            "{:<22} {:>9.3} {:>9.1} {:>9.1} {:>12.0} {:>10}K {:>6}ms{}\n",
            r.strategy,
            r.delivery_ratio,
            r.latency_p50_s,
            r.latency_p95_s,
            r.bytes_per_delivered,
            r.peak_cache_bytes / 1024,
            r.wall_ms,
            versus
        );
        if let Some(n) = &r.nearby {
            text += &format!(
                "  nearby channel: {} posts, {:.3} of {} within {} hops reached in {} s (p50 {:.1} s, p95 {:.1} s), \
                 {} more reached as people walked into range, {} frame bytes\n",
                n.posts,
                n.delivery_ratio,
                n.expected,
                weft_core::nearby::MAX_HOPS,
                weft_core::mesh::sim::NEARBY_DEADLINE_MS / 1000,
                n.latency_p50_s,
                n.latency_p95_s,
                n.reached_beyond,
                n.bytes
            );
        }
        if let Some(p) = &r.photos {
            text += &format!(
                "  photos: {} sent, {:.3} of {} (photo, member) pairs whole (p50 {:.1} s, p95 {:.1} s); the texts' \
                 figures are the line above\n",
                p.photos, p.delivery_ratio, p.expected, p.latency_p50_s, p.latency_p95_s
            );
        }
    }
    text
}

/// Delivery over time, one line per strategy and scenario, as a self-contained SVG.
fn plot(reports: &[Report]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const M: f64 = 50.0;
    let colours = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];
    let max_t = reports.iter().flat_map(|r| r.timeline.iter().map(|(t, _)| *t)).max().unwrap_or(1).max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{M}\" y=\"20\" font-size=\"14\">Delivered fraction over time (weft sim)</text>\n\
         <line x1=\"{M}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{M}\" y1=\"{M}\" x2=\"{M}\" y2=\"{}\" stroke=\"black\"/>\n",
        H - M,
        W - M,
        H - M,
        H - M
    );
    for i in 0..=4 {
        let y = H - M - (H - 2.0 * M) * i as f64 / 4.0;
        svg += &format!("<text x=\"10\" y=\"{y:.0}\">{:.2}</text>\n", i as f64 / 4.0);
    }
    svg += &format!("<text x=\"{}\" y=\"{}\">minutes (0 to {:.0})</text>\n", W / 2.0 - 40.0, H - 15.0, max_t / 60.0);
    for (i, r) in reports.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let points: Vec<String> = std::iter::once((0u64, 0.0))
            .chain(r.timeline.iter().copied())
            .map(|(t, f)| format!("{:.1},{:.1}", M + (W - 2.0 * M) * t as f64 / max_t, H - M - (H - 2.0 * M) * f))
            .collect();
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            points.join(" ")
        );
        svg += &format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{} · {}</text>\n",
            M + 10.0,
            M + 16.0 * (i as f64 + 1.0),
            r.scenario,
            r.strategy
        );
    }
    svg + "</svg>\n"
}
