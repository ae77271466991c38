//! The report: the throughput table, the swaps table, the two-writes table and the targets, as
//! Markdown on stdout.

use std::fmt::Write as _;
use std::time::Duration;

use crate::config::Config;
use crate::setup::{Tools, version_line};
use crate::shared::report::machine;
use crate::swaps::{Mode, SwapRun};
use crate::throughput::{CLIENTS, Figures, Peer, Throughput};
use crate::two_writes::{self, App, AppRun, Route};

/// The targets.
const ADDED_LATENCY_LIMIT: f64 = 1.5;
const THROUGHPUT_FLOOR: f64 = 0.7;
const RSS_LIMIT_MIB: f64 = 20.0;
const MIN_SWAPS: usize = 20;

/// The median (the lower middle of an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len().saturating_sub(1) / 2).copied()
}

/// Everything the run measured.
pub struct Results {
    pub throughput: Option<Result<Throughput, String>>,
    pub swaps: Option<Vec<(Mode, Result<SwapRun, String>)>>,
    pub two_writes: Option<Vec<(App, Result<AppRun, String>)>>,
    /// The HTTPS part's section, rendered (or why it could not run).
    pub https: Option<Result<String, String>>,
    pub took: Duration,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 && ours.is_finite() { format!("{:.2}×", ours / theirs) } else { "–".into() }
}

/// One table row: `| a | b | … |`, with `|` in cells escaped.
fn row(out: &mut String, cells: &[String]) {
    let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect();
    let _ = writeln!(out, "| {} |", cells.join(" | "));
}

pub fn render(config: &Config, tools: &Tools, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Command: `{}`", config.command());
    if let Some(Ok(throughput)) = &results.throughput {
        let _ = writeln!(out, "- Load generator: {}", throughput.client);
    }
    let _ = writeln!(out, "- nginx: {}", version_line(&tools.nginx, &["-v"]));
    let _ = writeln!(out, "- uvicorn: {}", version_line(&tools.uvicorn, &["-m", "uvicorn", "--version"]));
    if results.two_writes.is_some() {
        let _ = writeln!(out, "- python3: {}", version_line(&tools.python, &["--version"]));
        let _ = writeln!(out, "- Django: {}", two_writes::django_version(&tools.django));
    }
    let _ = writeln!(out, "- Total run time: {:.1} min", results.took.as_secs_f64() / 60.0);
    match &results.throughput {
        None => {}
        Some(Err(why)) => {
            let _ = writeln!(out, "\nThroughput: failed: {why}");
        }
        Some(Ok(throughput)) => throughput_table(&mut out, config, throughput),
    }
    match &results.swaps {
        None => {}
        Some(swaps) => swaps_table(&mut out, config, swaps),
    }
    if let Some(apps) = &results.two_writes {
        two_writes_table(&mut out, config, apps);
    }
    match &results.https {
        None => {}
        Some(Ok(section)) => out.push_str(section),
        Some(Err(why)) => {
            let _ = writeln!(out, "\n### HTTPS\n\nSKIP: {why}");
        }
    }
    let _ = writeln!(out, "\n### Targets\n");
    for line in targets(results) {
        let _ = writeln!(out, "{line}");
    }
    out
}

fn throughput_table(out: &mut String, config: &Config, throughput: &Throughput) {
    let _ = writeln!(
        out,
        "\n### Throughput: `GET /` on the fixture app, {} s per cell, median of {} round(s)\n",
        config.secs, config.rounds
    );
    let mut header: Vec<String> = vec!["figure".into()];
    header.extend(Peer::ALL.map(|p| p.label().to_owned()));
    header.extend(["devserve ÷ nginx".into(), "devserve ÷ direct".into()]);
    row(out, &header);
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    let fig = |c: usize, peer: Peer| throughput.cells[c][peer as usize].as_ref().ok().copied();
    for (c, &clients) in CLIENTS.iter().enumerate() {
        let plural = if clients == 1 { "client" } else { "clients" };
        let direct = fig(c, Peer::Direct);
        let text = |peer: Peer, show: &dyn Fn(Figures) -> String| match &throughput.cells[c][peer as usize] {
            Ok(figures) => show(*figures),
            Err(why) => why.clone(),
        };
        let line =
            |out: &mut String, label: String, show: &dyn Fn(Figures) -> String, value: fn(Figures) -> f64| {
                let mut cells = vec![label];
                cells.extend(Peer::ALL.map(|peer| text(peer, show)));
                let ours = fig(c, Peer::Devserve).map(value);
                let on = |other: Option<Figures>| match (ours, other.map(value)) {
                    (Some(ours), Some(theirs)) => ratio(ours, theirs),
                    _ => "–".into(),
                };
                cells.extend([on(fig(c, Peer::Nginx)), on(direct)]);
                row(out, &cells);
            };
        line(out, format!("requests/s, {clients} {plural}"), &|f| format!("{:.0}", f.rps), |f| f.rps);
        line(out, format!("latency p50, {clients} {plural}"), &|f| format!("{:.0} µs", f.p50_us), |f| {
            f.p50_us
        });
        line(out, format!("latency p99, {clients} {plural}"), &|f| format!("{:.0} µs", f.p99_us), |f| {
            f.p99_us
        });
        let mut cells = vec![format!("added p50 (p50 − direct p50), {clients} {plural}"), "–".into()];
        let added = |peer: Peer| Some(fig(c, peer)?.p50_us - direct?.p50_us);
        for peer in [Peer::Devserve, Peer::Nginx] {
            cells.push(match (&throughput.cells[c][peer as usize], added(peer)) {
                (Err(why), _) => why.clone(),
                (Ok(_), Some(added)) => format!("{added:.0} µs"),
                (Ok(_), None) => "–".into(),
            });
        }
        let ratio_cell = match (added(Peer::Devserve), added(Peer::Nginx)) {
            (Some(ours), Some(theirs)) => ratio(ours, theirs),
            _ => "–".into(),
        };
        cells.extend([ratio_cell, "–".into()]);
        row(out, &cells);
        let mut cells =
            vec![format!("failed requests (socket errors, timeouts, non-2xx), {clients} {plural}")];
        cells.extend(Peer::ALL.map(|peer| text(peer, &|f| format!("{} of {}", f.errors, f.requests))));
        cells.extend(["–".into(), "–".into()]);
        row(out, &cells);
    }
    let rss = |value: &Result<(u64, u64), String>, what: &str| match value {
        Ok((idle, peak)) => format!("{:.1} → {:.1} MiB{what}", mib(*idle), mib(*peak)),
        Err(why) => why.clone(),
    };
    let mut cells = vec![
        "RSS idle → largest sample at 16 clients (VmRSS)".to_owned(),
        "n/a".into(),
        rss(&throughput.devserve_rss, " (devserve's pid)"),
        rss(&throughput.nginx_rss, " (master + worker)"),
    ];
    cells.push(match (&throughput.devserve_rss, &throughput.nginx_rss) {
        (Ok((_, ours)), Ok((_, theirs))) => ratio(*ours as f64, *theirs as f64),
        _ => "–".into(),
    });
    cells.push("–".into());
    row(out, &cells);
}

fn swaps_table(out: &mut String, config: &Config, swaps: &[(Mode, Result<SwapRun, String>)]) {
    let _ = writeln!(
        out,
        "\n### Swaps: uvicorn under 2 clients (a new connection per `GET /`), {} swaps per mode\n",
        config.swaps
    );
    let mut header = vec!["figure".to_owned()];
    header.extend(swaps.iter().map(|(mode, _)| mode.label().to_owned()));
    row(out, &header);
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    type Show = fn(&SwapRun) -> String;
    let figures: [(&str, Show); 10] = [
        ("swaps done (file written → new gen ready → old gen stopped)", |r| r.swaps.to_string()),
        ("load time", |r| format!("{:.0} s", r.secs)),
        ("requests ok", |r| r.ok.to_string()),
        ("failed requests", |r| r.failed().to_string()),
        ("failed: refused (ECONNREFUSED)", |r| r.refused.to_string()),
        ("failed: reset, or closed without a response", |r| r.reset.to_string()),
        ("failed: non-200 status", |r| r.status.to_string()),
        ("failed: other", |r| r.other.to_string()),
        ("generations that failed to start", |r| r.failed_generations.to_string()),
        ("a failure of each kind, as the client saw it", |r| {
            if r.examples.is_empty() { "–".into() } else { r.examples.join("; ") }
        }),
    ];
    for (label, show) in figures {
        let mut cells = vec![label.to_owned()];
        cells.extend(swaps.iter().map(|(_, run)| match run {
            Ok(run) => show(run),
            Err(why) => why.clone(),
        }));
        row(out, &cells);
    }
}

fn two_writes_table(out: &mut String, config: &Config, apps: &[(App, Result<AppRun, String>)]) {
    let _ = writeln!(
        out,
        "\n### Two writes, Nagle on: sequential `GET /` from 1 client, {} round(s) of {} requests after {} unrecorded, percentiles over all rounds\n",
        config.rounds,
        config.requests,
        two_writes::WARM_UP
    );
    let mut header = vec!["figure".to_owned()];
    header.extend(Route::ALL.map(|route| route.label().to_owned()));
    row(out, &header);
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for (app, run) in apps {
        let run = match run {
            Ok(run) => run,
            Err(why) => {
                let mut cells = vec![app.label().to_owned()];
                cells.extend(Route::ALL.map(|_| why.clone()));
                row(out, &cells);
                continue;
            }
        };
        let text =
            |route: Route, show: &dyn Fn(two_writes::Figures) -> String| match &run.cells[route as usize] {
                Ok(figures) => show(*figures),
                Err(why) => why.clone(),
            };
        type Show = fn(two_writes::Figures) -> String;
        let lines: [(&str, Show); 4] = [
            ("latency p50", |f| format!("{:.0} µs", f.p50_us)),
            ("latency p90", |f| format!("{:.0} µs", f.p90_us)),
            ("latency p99 (max)", |f| format!("{:.0} µs ({:.0} µs)", f.p99_us, f.max_us)),
            ("failed requests of measured; connections opened", |f| {
                format!("{} of {}; {}", f.errors, f.requests, f.connections)
            }),
        ];
        for (label, show) in lines {
            let mut cells = vec![format!("{}: {label}", app.label())];
            cells.extend(Route::ALL.map(|route| text(route, &show)));
            row(out, &cells);
        }
        for (base, what) in [
            (Route::DirectFresh, "added p50 (p50 − direct fresh p50)"),
            (Route::DirectQuickAck, "the hop's own p50 (p50 − direct quick-ACK p50)"),
        ] {
            let mut cells = vec![format!("{}: {what}", app.label()), "–".into(), "–".into(), "–".into()];
            for route in [Route::Devserve, Route::Nginx] {
                cells.push(match (&run.cells[route as usize], run.get(base)) {
                    (Err(why), _) => why.clone(),
                    (Ok(figures), Some(base)) => format!("{:.0} µs", figures.p50_us - base.p50_us),
                    (Ok(_), None) => "–".into(),
                });
            }
            row(out, &cells);
        }
    }
}

/// `PASS`, `MISS` or `SKIP` lines for the targets.
fn targets(results: &Results) -> Vec<String> {
    let mut lines = Vec::new();
    let verdict = |pass: bool| if pass { "PASS" } else { "MISS" };
    match &results.throughput {
        None => lines.push("SKIP  throughput targets: part not run (BENCH_PROXY_PARTS)".to_owned()),
        Some(Err(why)) => lines.push(format!("SKIP  throughput targets: {why}")),
        Some(Ok(throughput)) => {
            for (c, &n) in CLIENTS.iter().enumerate() {
                let clients = if n == 1 { "1 client".to_owned() } else { format!("{n} clients") };
                let fig = |peer: Peer| throughput.cells[c][peer as usize].as_ref().ok().copied();
                let (Some(direct), Some(ours), Some(nginx)) =
                    (fig(Peer::Direct), fig(Peer::Devserve), fig(Peer::Nginx))
                else {
                    lines.push(format!("SKIP  added p50 and throughput at {clients}: a peer did not run"));
                    continue;
                };
                let (added, nginx_added) = (ours.p50_us - direct.p50_us, nginx.p50_us - direct.p50_us);
                // A non-positive nginx figure cannot be scaled: then devserve must add no more than it.
                let limit = if nginx_added > 0.0 { ADDED_LATENCY_LIMIT * nginx_added } else { nginx_added };
                lines.push(format!(
                    "{}  added p50 latency, {clients}: devserve {added:.0} µs ≤ {ADDED_LATENCY_LIMIT} × nginx {nginx_added:.0} µs = {limit:.0} µs ({})",
                    verdict(added <= limit),
                    ratio(added, nginx_added)
                ));
                let floor = THROUGHPUT_FLOOR * nginx.rps;
                lines.push(format!(
                    "{}  throughput, {clients}: devserve {:.0} req/s ≥ {THROUGHPUT_FLOOR} × nginx {:.0} req/s = {floor:.0} ({})",
                    verdict(ours.rps >= floor),
                    ours.rps,
                    nginx.rps,
                    ratio(ours.rps, nginx.rps)
                ));
            }
            lines.push(match throughput.devserve_rss {
                Ok((_, peak)) => format!(
                    "{}  devserve RSS at 16 clients: {:.1} MiB ≤ {RSS_LIMIT_MIB} MiB",
                    verdict(mib(peak) <= RSS_LIMIT_MIB),
                    mib(peak)
                ),
                Err(ref why) => format!("SKIP  devserve RSS at 16 clients: {why}"),
            });
        }
    }
    let run = |mode: Mode| results.swaps.as_ref()?.iter().find(|(m, _)| *m == mode).map(|(_, run)| run);
    let listen = match run(Mode::Listen) {
        Some(Ok(listen)) => {
            format!("{} failed across {} swaps behind --listen", listen.failed(), listen.swaps)
        }
        Some(Err(why)) => format!("--listen: {why}"),
        None => "--listen not run".into(),
    };
    lines.push(match run(Mode::Proxy) {
        None => "SKIP  zero failed requests with uvicorn behind --proxy: part not run (BENCH_PROXY_PARTS)".into(),
        Some(Err(why)) => format!("SKIP  zero failed requests with uvicorn behind --proxy: {why}"),
        Some(Ok(proxy)) => {
            let enough = if proxy.swaps >= MIN_SWAPS { String::new() } else { format!(" (the target asks for ≥ {MIN_SWAPS} swaps)") };
            format!(
                "{}  zero failed requests with uvicorn behind --proxy: {} failed of {} across {} swaps{enough}; {listen}",
                verdict(proxy.failed() == 0 && proxy.swaps >= MIN_SWAPS),
                proxy.failed(),
                proxy.ok + proxy.failed(),
                proxy.swaps
            )
        }
    });
    match &results.two_writes {
        None => lines.push("SKIP  two writes: part not run (BENCH_PROXY_PARTS)".to_owned()),
        Some(apps) => {
            for (app, run) in apps {
                let what = format!("two writes, {}: devserve's added p50 ≤ nginx's", app.label());
                let run = match run {
                    Ok(run) => run,
                    Err(why) => {
                        lines.push(format!("SKIP  {what}: {why}"));
                        continue;
                    }
                };
                let (Some(fresh), Some(ours), Some(nginx)) =
                    (run.get(Route::DirectFresh), run.get(Route::Devserve), run.get(Route::Nginx))
                else {
                    lines.push(format!("SKIP  {what}: a route did not run"));
                    continue;
                };
                let (added, nginx_added) = (ours.p50_us - fresh.p50_us, nginx.p50_us - fresh.p50_us);
                lines.push(format!(
                    "{}  {what}: devserve {added:.0} µs ≤ nginx {nginx_added:.0} µs (p50 {:.0} µs and {:.0} µs; direct, fresh connection {:.0} µs)",
                    verdict(added <= nginx_added),
                    ours.p50_us,
                    nginx.p50_us,
                    fresh.p50_us
                ));
            }
        }
    }
    lines.into_iter().map(|line| format!("- {line}")).collect()
}
