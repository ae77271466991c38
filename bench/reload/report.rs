//! Results: cells, rows and scenarios, the runner that fills a scenario's cells for every tool,
//! and the Markdown table.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crate::peers::Bins;
use crate::shared::report::machine;
use crate::tools::{Ctx, Tool};

#[derive(Clone, Copy)]
pub enum Unit {
    Ms,
    Count,
    MiB,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    Lower,
    /// No ratio: informational, or devserve only.
    Neither,
}

#[derive(Clone)]
pub enum Cell {
    Num(f64, Unit),
    Text(String),
    NotApplicable,
    Failed(String),
}

impl Cell {
    pub fn ms(d: Duration) -> Cell {
        Cell::Num(d.as_secs_f64() * 1000.0, Unit::Ms)
    }

    pub fn count(n: impl Into<u64>) -> Cell {
        Cell::Num(n.into() as f64, Unit::Count)
    }

    fn render(&self) -> String {
        match self {
            Cell::Num(v, Unit::Ms) if v.abs() < 10.0 => format!("{v:.1} ms"),
            Cell::Num(v, Unit::Ms) => format!("{v:.0} ms"),
            Cell::Num(v, Unit::Count) => format!("{v:.0}"),
            Cell::Num(v, Unit::MiB) => format!("{v:.1} MiB"),
            Cell::Text(text) => text.clone(),
            Cell::NotApplicable => "n/a".into(),
            Cell::Failed(reason) => format!("failed: {reason}"),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Cell::Num(v, _) => Some(*v),
            _ => None,
        }
    }
}

pub struct Figure {
    label: String,
    better: Better,
}

pub fn figure(label: impl Into<String>, better: Better) -> Figure {
    Figure { label: label.into(), better }
}

pub struct Row {
    label: String,
    better: Better,
    /// One per tool, in `Tool::ALL` order.
    cells: Vec<Cell>,
}

pub type Measure = fn(&Ctx, Tool) -> Result<Vec<Cell>, String>;

pub struct Scenario {
    pub name: &'static str,
    /// Its name in `BENCH_SCENARIOS`.
    pub key: &'static str,
    pub figures: Vec<Figure>,
    pub measure: Measure,
    pub devserve_only: bool,
    /// Whether it uses the idle tree (removed once the scenario is over).
    pub uses_tree: bool,
}

/// Runs one scenario for every tool; a failure or panic fills that tool's cells with the reason.
pub fn run_scenario(ctx: &Ctx, scenario: &Scenario) -> Vec<Row> {
    let n = scenario.figures.len();
    let mut columns = Vec::new();
    for tool in Tool::ALL {
        let cells = if scenario.devserve_only && tool != Tool::Devserve {
            vec![Cell::NotApplicable; n]
        } else if let Some(reason) = ctx.unavailable(tool) {
            vec![Cell::Text(reason); n]
        } else {
            eprintln!("[bench] {} · {} …", scenario.name, tool.label());
            let began = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| (scenario.measure)(ctx, tool)));
            let cells = match outcome {
                Ok(Ok(cells)) if cells.len() == n => cells,
                Ok(Ok(_)) => vec![Cell::Failed("wrong number of figures (bench bug)".into()); n],
                Ok(Err(reason)) => vec![Cell::Failed(reason); n],
                Err(panic) => vec![Cell::Failed(panic_text(&panic)); n],
            };
            let summary: Vec<String> = cells.iter().map(Cell::render).collect();
            eprintln!("[bench]   {} ({:.1}s)", summary.join(" | "), began.elapsed().as_secs_f64());
            cells
        };
        columns.push(cells);
    }
    let rows = scenario.figures.iter().enumerate();
    rows.map(|(i, fig)| Row {
        label: fig.label.clone(),
        better: fig.better,
        cells: columns.iter().map(|cells| cells[i].clone()).collect(),
    })
    .collect()
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
    format!("panic: {}", text.unwrap_or_default())
}

/// devserve's value over the best (lowest) peer's, for figures where lower is better.
fn ratio(row: &Row) -> String {
    let Some(ours) = row.cells[0].number() else {
        return "–".into();
    };
    let peers = Tool::ALL.iter().zip(&row.cells).skip(1);
    let numbers = peers.filter_map(|(tool, cell)| Some((tool.label(), cell.number()?)));
    let best = match row.better {
        Better::Neither => None,
        Better::Lower => numbers.min_by(|a, b| a.1.total_cmp(&b.1)),
    };
    let Some((peer, best)) = best else {
        return "–".into();
    };
    if best != 0.0 {
        format!("{:.2}× ({peer})", ours / best)
    } else if ours == 0.0 {
        "equal (0)".into()
    } else {
        format!("– ({peer}: 0)")
    }
}

pub fn render_report(ctx: &Ctx, rows: &[Row], took: Duration) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## Results\n");
    let _ = writeln!(out, "- Machine: {}", machine());
    let _ = writeln!(out, "- Command: `{}`", ctx.config.command());
    let _ = writeln!(out, "- watchexec: {}", Bins::version(&ctx.bins.watchexec));
    let _ = writeln!(out, "- systemfd: {}", Bins::version(&ctx.bins.systemfd));
    let _ = writeln!(out, "- Total run time: {:.1} min\n", took.as_secs_f64() / 60.0);
    let mut header: Vec<&str> = vec!["figure"];
    header.extend(Tool::ALL.map(Tool::label));
    header.push("devserve ÷ best peer");
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let mut cells = vec![row.label.clone()];
        cells.extend(row.cells.iter().map(Cell::render));
        cells.push(ratio(row));
        let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

pub fn secs(d: Duration) -> String {
    format!("{:.0} s", d.as_secs_f64())
}
