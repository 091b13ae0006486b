//! `--svg`: latency by percentile plot (x: percentile on a "number of nines" scale, y: ms),
//! corrected and raw series, rendered with plotters' SVG backend.

use crate::error::LoadError;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::path::Path;

/// `(nines, ms)` points: x = -log10(1 - q), so 90% -> 1, 99% -> 2, 99.9% -> 3.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut pts = Vec::new();
    if h.is_empty() {
        return pts;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        if q >= 1.0 {
            break;
        }
        pts.push((-(1.0 - q).log10(), v.value_iterated_to() as f64 / 1000.0));
    }
    pts
}

fn nines_label(x: &f64) -> String {
    let p = (1.0 - 10f64.powf(-x)) * 100.0;
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

pub fn write_plot(
    path: &Path,
    title: &str,
    main: &Histogram<u64>,
    raw: Option<&Histogram<u64>>,
) -> Result<(), LoadError> {
    let a = curve(main);
    let b = raw.map(curve).unwrap_or_default();
    let xmax = a.iter().chain(&b).map(|p| p.0).fold(1.0f64, f64::max).ceil().min(6.0);
    let ymax = a.iter().chain(&b).map(|p| p.1).fold(0.001f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| LoadError::Other(format!("svg: {e}"));
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: latency by percentile"), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(xmax as usize + 1)
        .x_label_formatter(&nines_label)
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(a, &RED))
        .map_err(|e| err(&e))?
        .label("corrected")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    if !b.is_empty() {
        chart
            .draw_series(LineSeries::new(b, &BLUE))
            .map_err(|e| err(&e))?
            .label("raw")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_labels() {
        assert_eq!(nines_label(&0.0), "0%");
        assert_eq!(nines_label(&1.0), "90%");
        assert_eq!(nines_label(&3.0), "99.9%");
    }
}
