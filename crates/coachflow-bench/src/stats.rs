//! Latency histograms (HDR, microsecond resolution) and the medians of repeated runs.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies of one kind of request, in microseconds, from 1 µs to 10 minutes at three
/// significant digits.
#[derive(Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl fmt::Debug for Latencies {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Latencies")
            .field("count", &self.count())
            .field("p50_ms", &self.percentile_ms(50.0))
            .field("p99_ms", &self.percentile_ms(99.0))
            .finish()
    }
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

impl Latencies {
    pub fn new() -> Latencies {
        #[allow(clippy::expect_used)] // constant, valid bounds
        let histogram = Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds");
        Latencies { histogram }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.histogram.saturating_record(micros);
    }

    pub fn add(&mut self, other: &Latencies) {
        // Same bounds on both sides: cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `percentile` (0 to 100), in milliseconds.
    pub fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.count() == 0 {
            return f64::NAN;
        }
        self.histogram.value_at_percentile(percentile) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        if self.count() == 0 {
            return f64::NAN;
        }
        self.histogram.max() as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        self.histogram.mean() / 1000.0
    }

    /// `p50 / p99 / max` in milliseconds.
    pub fn summary(&self) -> String {
        format!(
            "{} / {} / {}",
            ms(self.percentile_ms(50.0)),
            ms(self.percentile_ms(99.0)),
            ms(self.max_ms())
        )
    }
}

/// A millisecond figure with as many decimals as it deserves.
pub fn ms(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

/// The median of `values` (the lower middle one for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|value| !value.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}

/// Named figures of one run, in the order they were added.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub values: Vec<(String, f64)>,
}

impl Figures {
    pub fn set(&mut self, name: &str, value: f64) {
        match self.values.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, slot)) => *slot = value,
            None => self.values.push((name.to_owned(), value)),
        }
    }

    pub fn get(&self, name: &str) -> f64 {
        self.values
            .iter()
            .find(|(existing, _)| existing == name)
            .map_or(f64::NAN, |(_, value)| *value)
    }
}

/// Every run's figures as a Markdown table: one row per run, then the median run's row,
/// the run whose `by` figure is the median (the lower middle one for an even count), shown
/// whole, so that the figures of one row always come from one run.
pub fn table(title: &str, runs: &[Figures], by: &str) -> String {
    let mut out = rows(title, runs);
    if let Some(index) = median_run(runs, by)
        && runs.len() > 1
    {
        let columns = columns(runs);
        let cells: Vec<String> = columns
            .iter()
            .map(|column| format!("**{}**", figure(runs[index].get(column))))
            .collect();
        out.push_str(&format!(
            "| median: run {} (by {by}) | {} |\n",
            index + 1,
            cells.join(" | ")
        ));
    }
    out
}

/// The index of the run whose `by` figure is the median of the runs that have one.
pub fn median_run(runs: &[Figures], by: &str) -> Option<usize> {
    let mut measured: Vec<(usize, f64)> = runs
        .iter()
        .enumerate()
        .map(|(index, run)| (index, run.get(by)))
        .filter(|(_, value)| !value.is_nan())
        .collect();
    if measured.is_empty() {
        return None;
    }
    measured.sort_by(|left, right| left.1.total_cmp(&right.1));
    Some(measured[(measured.len() - 1) / 2].0)
}

/// One Markdown row per entry of `runs`, without medians.
pub fn rows(title: &str, runs: &[Figures]) -> String {
    let columns = columns(runs);
    let mut out = format!("\n### {title}\n\n| run | {} |\n|---|", columns.join(" | "));
    for _ in &columns {
        out.push_str("---:|");
    }
    out.push('\n');
    for (index, run) in runs.iter().enumerate() {
        let cells: Vec<String> = columns.iter().map(|column| figure(run.get(column))).collect();
        out.push_str(&format!("| {} | {} |\n", index + 1, cells.join(" | ")));
    }
    out
}

fn columns(runs: &[Figures]) -> Vec<String> {
    let mut columns: Vec<String> = Vec::new();
    for run in runs {
        for (name, _) in &run.values {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    columns
}

fn figure(value: f64) -> String {
    if value.is_nan() {
        "–".to_owned()
    } else if (value.fract() == 0.0 && value.abs() < 1e15) || value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_recorded_latencies() {
        let mut latencies = Latencies::new();
        for millis in 1..=100 {
            latencies.record(Duration::from_millis(millis));
        }
        assert_eq!(latencies.count(), 100);
        assert!((latencies.percentile_ms(50.0) - 50.0).abs() < 0.1);
        assert!((latencies.percentile_ms(99.0) - 99.0).abs() < 0.1);
        assert!((latencies.max_ms() - 100.0).abs() < 0.1);
    }

    #[test]
    fn the_median_ignores_missing_values() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, f64::NAN, 2.0, 3.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn the_median_row_is_one_whole_run() {
        let run = |tps: f64, p99: f64| {
            let mut figures = Figures::default();
            figures.set("tps", tps);
            figures.set("p99 ms", p99);
            figures
        };
        // By tps the median run is the third (200); its p99 (8.5) is not the median p99.
        let runs = [run(100.0, 4.5), run(300.0, 1.5), run(200.0, 8.5)];
        let table = table("t", &runs, "tps");
        assert!(table.contains("| run | tps | p99 ms |"), "{table}");
        assert!(table.contains("| 3 | 200 | 8.50 |"), "{table}");
        assert!(
            table.contains("| median: run 3 (by tps) | **200** | **8.50** |"),
            "{table}"
        );
        assert_eq!(median_run(&runs, "p99 ms"), Some(0));
        assert_eq!(median_run(&runs, "missing"), None);
    }
}
