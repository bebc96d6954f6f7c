//! Median, spread and percentiles of a set of measurements, written as report cells.

/// Median, min and max of a set of measurements.
pub struct Spread {
    pub median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// As a rate: `12,346 (11,000–13,000)`.
    pub fn rate(&self) -> String {
        if self.min == self.max {
            thousands(self.median)
        } else {
            format!(
                "{} ({}–{})",
                thousands(self.median),
                thousands(self.min),
                thousands(self.max)
            )
        }
    }

    /// As a ratio: `1.52 (1.41–1.59)`.
    pub fn ratio(&self) -> String {
        if self.min == self.max {
            format!("{:.2}", self.median)
        } else {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.min, self.max)
        }
    }
}

/// 12345.6 → "12,346".
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "–".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Latency percentiles of call samples, in µs.
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or(f64::NAN)
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            mean: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        }
    }
}
