//! Figures drawn with plotters into PNG and SVG: Figure 5's augmentation heatmap, Figure
//! 7's top-1 against parameter count, Figure 8's head-dimension lines, Figure 9's batch x
//! epochs bars, and training curves. Text uses the bundled DejaVu Sans (registered once as
//! "sans-serif"; no system fonts needed). Error bars are one standard deviation over
//! seeds, Figure 7's the 95% interval. The heatmap's colour scale starts at the control (0
//! without one) and spans at least [`MIN_SPAN`] points; its best cell and those not
//! distinguishable from it are outlined, and so are the bars of Figure 9.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::aggregate::{CellValue, Mark, Stat};

const FONT: &str = "sans-serif";

/// Registers the bundled font under [`FONT`] (once per process).
pub(crate) fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        )
        .map_err(|_| "the bundled font assets/DejaVuSans.ttf did not load".to_string())
    })
    .clone()
}

/// Tableau-10: distinguishable, colour-blind-friendlier than the default palette.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// A line of points with error bars.
#[derive(Clone, Debug)]
pub(crate) struct Series {
    pub name: String,
    pub color: usize,
    pub dashed: bool,
    pub points: Vec<(f64, Stat)>,
}

/// One chart of a [`Plot::Scatter`]: its title, its series, and labelled vertical guides
/// (x, label) that name the x positions (Figure 7: each encoder at its parameter count).
#[derive(Clone, Debug)]
pub(crate) struct ScatterPanel {
    pub title: String,
    pub series: Vec<Series>,
    pub guides: Vec<(f64, String)>,
}

/// A training curve of one cell (mean over seeds where several).
#[derive(Clone, Debug)]
pub(crate) struct Curve {
    pub name: String,
    pub loss: Vec<(f64, f64)>,
    pub acc: Vec<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub(crate) enum Plot {
    /// Figure 5: rows = first op, columns = second op, diagonal = the op alone, plus a
    /// row-average column and a colour scale.
    Heatmap {
        ops: Vec<String>,
        values: Vec<Vec<CellValue>>,
        row_avg: Vec<Option<(f64, bool)>>,
        scale_label: String,
        /// The colour scale's floor (the random-weights control): cells at or below it
        /// share the lowest colour, so the scale spans what training added; 0 without one.
        /// The scale is never narrower than [`MIN_SPAN`].
        floor: Option<f64>,
    },
    /// Figure 8: y against x on a log2 axis (x values are the real dimensions).
    Lines {
        x_label: String,
        y_label: String,
        series: Vec<Series>,
        /// Constant series drawn across the whole x range ("no head").
        flat: Vec<Series>,
    },
    /// Figure 9: grouped bars, one group per `groups`, one bar per `bars`.
    Bars {
        x_label: String,
        y_label: String,
        groups: Vec<String>,
        bars: Vec<String>,
        values: Vec<Vec<CellValue>>,
        /// A dashed horizontal line across the chart: (legend name, value).
        reference: Option<(String, f64)>,
    },
    /// Figure 7: y against x on a log10 axis, one chart per panel side by side (the same
    /// x range, each its own y range); points unjoined, measured ones filled with their
    /// 95% interval over seeds, references (`dashed`: a control, the paper's) hollow.
    Scatter {
        x_label: String,
        y_label: String,
        panels: Vec<ScatterPanel>,
    },
    /// Loss and contrastive accuracy against epochs.
    Curves { curves: Vec<Curve> },
    /// One run's curves, one small chart each, two per row: (y label, points).
    Panels {
        x_label: String,
        panels: Vec<(String, Vec<(f64, f64)>)>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Figure {
    /// File stem.
    pub id: String,
    pub title: String,
    /// Markdown caption under the embedded image.
    pub caption: String,
    pub plot: Plot,
}

type R = Result<(), String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK)
}

fn centered(size: f64) -> TextStyle<'static> {
    font(size).pos(Pos::new(HPos::Center, VPos::Center))
}

impl Figure {
    /// Pixel size of the canvas.
    fn size(&self) -> (u32, u32) {
        match &self.plot {
            Plot::Heatmap { ops, values, .. } => {
                let n = ops.len() as u32;
                let legend = if marked(values) { MARK_LEGEND_H } else { 0 };
                (
                    150 + (n + 1) * CELL + 20 + 160,
                    110 + n * CELL + 90 + legend,
                )
            }
            Plot::Curves { curves } => (1200, 520 + legend_height(curves.len(), 3)),
            Plot::Lines { series, flat, .. } => {
                (960, 600 + legend_height(series.len() + flat.len(), 3))
            }
            Plot::Bars { bars, .. } => (960, 600 + legend_height(bars.len() + 2, 5)),
            Plot::Scatter { panels, .. } => (
                if panels.len() > 1 { 1400 } else { 960 },
                640 + legend_height(scatter_legend(panels).len(), 3),
            ),
            Plot::Panels { panels, .. } => (1000, 50 + 300 * panels.len().div_ceil(2) as u32),
        }
    }

    /// Writes `<id>.png` and/or `<id>.svg` into `dir`.
    pub fn write(&self, dir: &Path, png: bool, svg: bool) -> anyhow::Result<Vec<PathBuf>> {
        register_font().map_err(anyhow::Error::msg)?;
        let mut out = Vec::new();
        let size = self.size();
        if png {
            let path = dir.join(format!("{}.png", self.id));
            {
                let root = BitMapBackend::new(&path, size).into_drawing_area();
                self.draw(&root)
                    .and_then(|_| root.present().map_err(err))
                    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
            }
            out.push(path);
        }
        if svg {
            let path = dir.join(format!("{}.svg", self.id));
            std::fs::write(&path, self.svg()?)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            out.push(path);
        }
        Ok(out)
    }

    /// The figure as an SVG document (what `write` puts in `<id>.svg`, and what the
    /// dashboard inlines).
    pub fn svg(&self) -> anyhow::Result<String> {
        register_font().map_err(anyhow::Error::msg)?;
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, self.size()).into_drawing_area();
            self.draw(&root)
                .and_then(|_| root.present().map_err(err))
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", self.id))?;
        }
        Ok(text)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> R {
        root.fill(&WHITE).map_err(err)?;
        let (w, _) = root.dim_in_pixel();
        root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 24),
            centered(22.0),
        ))
        .map_err(err)?;
        match &self.plot {
            Plot::Heatmap {
                ops,
                values,
                row_avg,
                scale_label,
                floor,
            } => heatmap(root, ops, values, row_avg, scale_label, *floor),
            Plot::Lines {
                x_label,
                y_label,
                series,
                flat,
            } => lines(root, x_label, y_label, series, flat),
            Plot::Bars {
                x_label,
                y_label,
                groups,
                bars,
                values,
                reference,
            } => grouped_bars(
                root,
                x_label,
                y_label,
                (groups, bars),
                values,
                reference.as_ref(),
            ),
            Plot::Scatter {
                x_label,
                y_label,
                panels,
            } => scatter(root, x_label, y_label, panels),
            Plot::Curves { curves } => training_curves(root, curves),
            Plot::Panels { x_label, panels } => small_multiples(root, x_label, panels),
        }
    }
}

const CELL: u32 = 86;

fn text_on(bg: RGBColor) -> &'static RGBColor {
    let RGBColor(r, g, b) = bg;
    let luma = 0.299 * r as f64 + 0.587 * g as f64 + 0.114 * b as f64;
    if luma > 140.0 {
        &BLACK
    } else {
        &WHITE
    }
}

fn heat(v: f64, lo: f64, hi: f64) -> RGBColor {
    ViridisRGB::get_color_normalized(v.clamp(lo, hi), lo, hi)
}

/// Where Figure 5's grid starts and how far the row-average column stands off it.
const HEAT_X0: i32 = 150;
const HEAT_Y0: i32 = 110;
const HEAT_GAP: i32 = 14;
const NO_VALUE: RGBColor = RGBColor(225, 225, 225);

/// The outline of the best cell and of those not distinguishable from it.
const MARK_COLOR: RGBColor = RGBColor(228, 26, 28);
/// The height of the line under the heatmap that says what the outlines mean.
const MARK_LEGEND_H: u32 = 30;

/// The narrowest colour scale, in points of top-1: a gap of a point or two (single-seed
/// noise at small scale) takes at most a fifth of the colours.
pub(crate) const MIN_SPAN: f64 = 10.0;

/// The caption sentence that says how the heatmap's colour scale is set.
pub(crate) fn heatmap_scale_note(floor: Option<f64>) -> String {
    let from = match floor {
        Some(f) => format!(
            "from the random-weights control ({f:.1}%, same encoder untrained) at the floor"
        ),
        None => "from 0% (no control sets the floor)".to_string(),
    };
    format!(
        "Colour scale: {from} to the best cell, and at least {MIN_SPAN:.0} points wide, so differences of a point or two stay faint; cells at or below the floor share the darkest colour."
    )
}

/// What one heatmap cell shows: its colour, the main number, an optional second line and
/// its standing against the best cell.
struct CellLook {
    bg: RGBColor,
    main: String,
    sub: Option<String>,
    mark: Mark,
}

/// A value's label: `≈` before it when it is not distinguishable from the best.
fn value_label(mean: f64, mark: &Mark) -> String {
    match mark {
        Mark::Tied(_) => format!("≈ {mean:.1}"),
        _ => format!("{mean:.1}"),
    }
}

/// The outline width of a marked value: thick for the best, thin for a tie.
fn outline_width(mark: &Mark) -> Option<u32> {
    match mark {
        Mark::Best => Some(5),
        Mark::Tied(_) => Some(2),
        Mark::None | Mark::Below(_) => None,
    }
}

/// Whether any cell of a heatmap is marked.
fn marked(values: &[Vec<CellValue>]) -> bool {
    values.iter().flatten().any(|v| {
        matches!(
            v,
            CellValue::Value {
                mark: Mark::Best,
                ..
            }
        )
    })
}

fn heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    ops: &[String],
    values: &[Vec<CellValue>],
    row_avg: &[Option<(f64, bool)>],
    scale_label: &str,
    floor: Option<f64>,
) -> R {
    let (lo, hi) = colour_range(values, row_avg, floor);
    let (n, c) = (ops.len() as i32, CELL as i32);
    for (i, row) in values.iter().enumerate() {
        let y = HEAT_Y0 + i as i32 * c;
        for (j, v) in row.iter().enumerate() {
            draw_cell(root, (HEAT_X0 + j as i32 * c, y), value_look(v, lo, hi))?;
        }
        let avg = row_avg.get(i).copied().flatten();
        draw_cell(
            root,
            (HEAT_X0 + n * c + HEAT_GAP, y),
            row_avg_look(avg, lo, hi),
        )?;
    }
    heatmap_labels(root, ops)?;
    if marked(values) {
        mark_legend(root, n)?;
    }
    colour_scale(root, n, (lo, hi), scale_label)
}

/// The line under the heatmap's axis title that says what its outlines mean.
fn mark_legend<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, n: i32) -> R {
    let y = HEAT_Y0 + n * CELL as i32 + 102;
    for (x, mark, text) in [
        (HEAT_X0, Mark::Best, "best"),
        (
            HEAT_X0 + 84,
            Mark::Tied(String::new()),
            "≈ not distinguishable from the best (p ≥ 0.05)",
        ),
    ] {
        let w = outline_width(&mark).expect("marked");
        root.draw(&Rectangle::new(
            [(x, y - 10), (x + 20, y + 10)],
            MARK_COLOR.stroke_width(w),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            text.to_string(),
            (x + 28, y),
            font(15.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The colour scale's ends: from `floor` (the control; 0 without one) to the highest cell
/// or row average, and at least [`MIN_SPAN`] wide. Never from the lowest cell: that would
/// stretch whatever spread the cells have, noise included, over every colour.
fn colour_range(
    values: &[Vec<CellValue>],
    row_avg: &[Option<(f64, bool)>],
    floor: Option<f64>,
) -> (f64, f64) {
    let lo = floor.unwrap_or(0.0);
    let hi = values
        .iter()
        .flatten()
        .filter_map(|v| v.stat().map(|s| s.mean))
        .chain(row_avg.iter().flatten().map(|a| a.0))
        .fold(lo + MIN_SPAN, f64::max);
    (lo, hi)
}

/// A grid cell: the mean, with the spread over seeds or how many seeds it has so far.
fn value_look(v: &CellValue, lo: f64, hi: f64) -> CellLook {
    match v {
        CellValue::Value {
            stat,
            expected,
            mark,
            ..
        } => CellLook {
            bg: heat(stat.mean, lo, hi),
            main: value_label(stat.mean, mark),
            mark: mark.clone(),
            sub: match stat.std {
                Some(sd) => Some(format!("± {sd:.1}")),
                None if stat.n < *expected => Some(format!("{}/{} seeds", stat.n, expected)),
                None => None,
            },
        },
        CellValue::Missing(why) => CellLook {
            bg: NO_VALUE,
            main: "—".to_string(),
            sub: Some(why.to_string()),
            mark: Mark::None,
        },
    }
}

/// A row-average cell: the average, marked when some of the row is missing.
fn row_avg_look(avg: Option<(f64, bool)>, lo: f64, hi: f64) -> CellLook {
    match avg {
        Some((v, partial)) => CellLook {
            bg: heat(v, lo, hi),
            main: format!("{v:.1}"),
            sub: partial.then(|| "partial".to_string()),
            mark: Mark::None,
        },
        None => CellLook {
            bg: NO_VALUE,
            main: "—".to_string(),
            sub: None,
            mark: Mark::None,
        },
    }
}

/// A filled square with a white border and its text centred, legible on its colour.
fn draw_cell<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    look: CellLook,
) -> R {
    let c = CELL as i32;
    let square = [(x, y), (x + c, y + c)];
    root.draw(&Rectangle::new(square, look.bg.filled()))
        .map_err(err)?;
    root.draw(&Rectangle::new(square, WHITE.stroke_width(2)))
        .map_err(err)?;
    if let Some(w) = outline_width(&look.mark) {
        let inset = [(x + 4, y + 4), (x + c - 4, y + c - 4)];
        root.draw(&Rectangle::new(inset, MARK_COLOR.stroke_width(w)))
            .map_err(err)?;
    }
    let fg = text_on(look.bg);
    let dy = if look.sub.is_some() { -9 } else { 0 };
    root.draw(&Text::new(
        look.main,
        (x + c / 2, y + c / 2 + dy),
        centered(18.0).color(fg),
    ))
    .map_err(err)?;
    if let Some(s) = look.sub {
        root.draw(&Text::new(
            s,
            (x + c / 2, y + c / 2 + 13),
            centered(13.0).color(fg),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// Labels: rows (first op) on the left, columns (second op) below, and the axis titles.
fn heatmap_labels<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, ops: &[String]) -> R {
    let (n, c) = (ops.len() as i32, CELL as i32);
    let (x0, y0) = (HEAT_X0, HEAT_Y0);
    for (i, op) in ops.iter().enumerate() {
        root.draw(&Text::new(
            op.clone(),
            (x0 - 10, y0 + i as i32 * c + c / 2),
            font(16.0).pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(err)?;
        root.draw(&Text::new(
            op.clone(),
            (x0 + i as i32 * c + c / 2, y0 + n * c + 16),
            centered(16.0),
        ))
        .map_err(err)?;
    }
    root.draw(&Text::new(
        "row avg".to_string(),
        (x0 + n * c + HEAT_GAP + c / 2, y0 + n * c + 16),
        centered(16.0),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        "2nd transformation".to_string(),
        (x0 + n * c / 2, y0 + n * c + 50),
        centered(17.0),
    ))
    .map_err(err)?;
    root.draw(&Text::new(
        "1st transformation".to_string(),
        (22, y0 + n * c / 2),
        TextStyle::from((FONT, 17.0).into_font().transform(FontTransform::Rotate270))
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(err)?;
    Ok(())
}

/// The colour bar right of the row averages, with five ticks and its label on top.
fn colour_scale<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    n: i32,
    (lo, hi): (f64, f64),
    label: &str,
) -> R {
    let c = CELL as i32;
    let bx = HEAT_X0 + (n + 1) * c + HEAT_GAP + 30;
    let (by0, by1) = (HEAT_Y0, HEAT_Y0 + n * c);
    let steps = (by1 - by0).max(1);
    for k in 0..steps {
        let v = hi - (hi - lo) * k as f64 / steps as f64;
        root.draw(&Rectangle::new(
            [(bx, by0 + k), (bx + 22, by0 + k + 1)],
            heat(v, lo, hi).filled(),
        ))
        .map_err(err)?;
    }
    root.draw(&Rectangle::new(
        [(bx, by0), (bx + 22, by1)],
        BLACK.stroke_width(1),
    ))
    .map_err(err)?;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = by1 - (by1 - by0) * k / 4;
        root.draw(&PathElement::new(vec![(bx + 22, y), (bx + 27, y)], BLACK))
            .map_err(err)?;
        root.draw(&Text::new(
            format!("{v:.1}"),
            (bx + 31, y),
            font(14.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    root.draw(&Text::new(
        label.to_string(),
        (bx + 11, by0 - 18),
        centered(14.0),
    ))
    .map_err(err)?;
    Ok(())
}

fn legend_height(entries: usize, per_row: usize) -> u32 {
    (entries.div_ceil(per_row).max(1) as u32) * 26 + 14
}

/// A legend below the chart: (name, colour, dashed), `per_row` entries a row.
fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    top: i32,
    entries: &[(String, RGBColor, bool)],
    per_row: usize,
) -> R {
    let (w, _) = root.dim_in_pixel();
    let col_w = (w as i32 - 80) / per_row as i32;
    for (k, (name, col, dashed)) in entries.iter().enumerate() {
        let x = 60 + (k % per_row) as i32 * col_w;
        let y = top + (k / per_row) as i32 * 26 + 12;
        if *dashed {
            for s in 0..4 {
                let sx = x + s * 9;
                root.draw(&PathElement::new(
                    vec![(sx, y), (sx + 5, y)],
                    col.stroke_width(3),
                ))
                .map_err(err)?;
            }
        } else {
            root.draw(&PathElement::new(
                vec![(x, y), (x + 32, y)],
                col.stroke_width(3),
            ))
            .map_err(err)?;
        }
        root.draw(&Circle::new((x + 16, y), 4, col.filled()))
            .map_err(err)?;
        root.draw(&Text::new(
            name.clone(),
            (x + 40, y),
            font(15.0).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn y_range(vals: impl Iterator<Item = (f64, f64)>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (a, b) in vals {
        lo = lo.min(a);
        hi = hi.max(b);
    }
    if !lo.is_finite() {
        return (0.0, 100.0);
    }
    let pad = ((hi - lo) * 0.1)
        .max(hi.abs().max(lo.abs()) * 0.01)
        .max(0.05);
    (lo - pad, hi + pad)
}

/// A tick label without float noise: `1`, `0.5`, `1.25`.
fn tick(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn stat_span(s: &Stat) -> (f64, f64) {
    let sd = s.std.unwrap_or(0.0);
    (s.mean - sd, s.mean + sd)
}

fn lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    flat: &[Series],
) -> R {
    let (w, h) = root.dim_in_pixel();
    let legend_h = legend_height(series.len() + flat.len(), 3);
    let (plot_area, legend_area_top) = (root.margin(40, 0, 10, 20), h as i32 - legend_h as i32);
    let plot_area = plot_area.shrink((0, 0), (w - 30, h - legend_h - 40));
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0.log2()))
        .collect();
    let (xlo, xhi) = xs
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let (xlo, xhi) = if xlo.is_finite() {
        (xlo - 0.3, xhi + 0.3)
    } else {
        (4.7, 11.3)
    };
    let (ylo, yhi) = y_range(
        series
            .iter()
            .chain(flat)
            .flat_map(|s| s.points.iter().map(|p| stat_span(&p.1))),
    );
    let mut chart = ChartBuilder::on(&plot_area)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(xlo..xhi, ylo..yhi)
        .map_err(err)?;
    let mut ticks: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    y_mesh(&mut chart, y_label)?;
    // x ticks at the dimensions themselves (log2 axis).
    let ticks: Vec<(f64, String)> = ticks.iter().map(|&t| (t.log2(), format!("{t}"))).collect();
    x_axis(root, &chart, (xlo, xhi, ylo), &ticks, x_label)?;
    let mut entries = Vec::new();
    for s in flat {
        let col = color(s.color);
        let y = s.points.first().map(|p| p.1).ok_or("empty flat series")?;
        let pts = vec![(xlo, y.mean), (xhi, y.mean)];
        draw_line(&mut chart, pts, col, s.dashed)?;
        if let Some(sd) = y.std {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(xlo, y.mean - sd), (xhi, y.mean + sd)],
                    col.mix(0.12).filled(),
                )))
                .map_err(err)?;
        }
        entries.push((s.name.clone(), col, s.dashed));
    }
    for s in series {
        let col = color(s.color);
        let pts: Vec<(f64, f64)> = s.points.iter().map(|(x, st)| (x.log2(), st.mean)).collect();
        draw_line(&mut chart, pts.clone(), col, s.dashed)?;
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, col.filled())))
            .map_err(err)?;
        chart
            .draw_series(
                s.points
                    .iter()
                    .filter(|p| p.1.std.is_some())
                    .map(|(x, st)| {
                        let (a, b) = stat_span(st);
                        ErrorBar::new_vertical(x.log2(), a, st.mean, b, col.stroke_width(2), 8)
                    }),
            )
            .map_err(err)?;
        entries.push((s.name.clone(), col, s.dashed));
    }
    legend(root, legend_area_top, &entries, 3)
}

/// A chart on two f64 axes.
type Chart2d<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The y axis's mesh, ticks and title; no x labels (the caller draws its own).
fn y_mesh<DB: DrawingBackend>(chart: &mut Chart2d<'_, DB>, y_label: &str) -> R {
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(0)
        .disable_x_mesh()
        .y_desc(y_label)
        .y_label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)
}

/// Tick marks and labels under the x axis at `ticks` (position on the axis, label), and
/// the axis title under them, drawn on `root` at the chart's backend coordinates.
fn x_axis<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart2d<'_, DB>,
    (xlo, xhi, ylo): (f64, f64, f64),
    ticks: &[(f64, String)],
    x_label: &str,
) -> R {
    for (x, name) in ticks {
        let (px, py) = chart.backend_coord(&(*x, ylo));
        root.draw(&PathElement::new(vec![(px, py), (px, py + 5)], BLACK))
            .map_err(err)?;
        root.draw(&Text::new(name.clone(), (px, py + 16), centered(14.0)))
            .map_err(err)?;
    }
    let (cx, cy) = chart.backend_coord(&((xlo + xhi) / 2.0, ylo));
    root.draw(&Text::new(
        x_label.to_string(),
        (cx, cy + 42),
        centered(16.0),
    ))
    .map_err(err)
}

fn draw_line<DB: DrawingBackend>(
    chart: &mut Chart2d<'_, DB>,
    pts: Vec<(f64, f64)>,
    col: RGBColor,
    dashed: bool,
) -> R {
    if dashed {
        chart
            .draw_series(DashedLineSeries::new(pts, 8, 6, col.stroke_width(2)))
            .map_err(err)?;
    } else {
        chart
            .draw_series(LineSeries::new(pts, col.stroke_width(2)))
            .map_err(err)?;
    }
    Ok(())
}

fn grouped_bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x_label: &str,
    y_label: &str,
    (groups, bars): (&[String], &[String]),
    values: &[Vec<CellValue>],
    reference: Option<&(String, f64)>,
) -> R {
    let (w, h) = root.dim_in_pixel();
    let legend_h = legend_height(bars.len() + 2, 5);
    let plot_area = root
        .margin(40, 0, 10, 20)
        .shrink((0, 0), (w - 30, h - legend_h - 40));
    let (_, yhi) = y_range(
        values
            .iter()
            .flatten()
            .filter_map(|v| v.stat())
            .map(|s| stat_span(&s))
            .chain(reference.map(|r| (r.1, r.1))),
    );
    let yhi = yhi * 1.1; // room for the value labels above the bars
    let ng = groups.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&plot_area)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..ng, 0f64..yhi)
        .map_err(err)?;
    y_mesh(&mut chart, y_label)?;
    let nb = bars.len().max(1) as f64;
    let bw = 0.8 / nb;
    for (g, row) in values.iter().enumerate() {
        for (b, v) in row.iter().enumerate() {
            let x = g as f64 + 0.1 + b as f64 * bw;
            let col = color(b);
            match v {
                CellValue::Value { stat: st, mark, .. } => {
                    let bar = [(x + bw * 0.05, 0.0), (x + bw * 0.95, st.mean)];
                    chart
                        .draw_series(std::iter::once(Rectangle::new(bar, col.filled())))
                        .map_err(err)?;
                    if let Some(w) = outline_width(mark) {
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                bar,
                                MARK_COLOR.stroke_width(w),
                            )))
                            .map_err(err)?;
                    }
                    let (_, top) = stat_span(st);
                    let (px, py) = chart.backend_coord(&(x + bw / 2.0, top));
                    root.draw(&Text::new(
                        value_label(st.mean, mark),
                        (px, py - 12),
                        centered(13.0),
                    ))
                    .map_err(err)?;
                    if st.std.is_some() {
                        let (a, c) = stat_span(st);
                        chart
                            .draw_series(std::iter::once(ErrorBar::new_vertical(
                                x + bw / 2.0,
                                a,
                                st.mean,
                                c,
                                BLACK.stroke_width(2),
                                8,
                            )))
                            .map_err(err)?;
                    }
                }
                CellValue::Missing(why) => {
                    let (px, py) = chart.backend_coord(&(x + bw / 2.0, 0.0));
                    root.draw(&Text::new(why.to_string(), (px, py - 12), centered(14.0)))
                        .map_err(err)?;
                }
            }
        }
        let (px, py) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(groups[g].clone(), (px, py + 16), centered(15.0)))
            .map_err(err)?;
    }
    let (cx, cy) = chart.backend_coord(&(ng / 2.0, 0.0));
    root.draw(&Text::new(
        x_label.to_string(),
        (cx, cy + 42),
        centered(16.0),
    ))
    .map_err(err)?;
    let mut entries: Vec<(String, RGBColor, bool)> = bars
        .iter()
        .enumerate()
        .map(|(i, b)| (b.clone(), color(i), false))
        .collect();
    if let Some((name, y)) = reference {
        draw_line(&mut chart, vec![(0.0, *y), (ng, *y)], BLACK, true)?;
        entries.push((name.clone(), BLACK, true));
    }
    if marked(values) {
        entries.push(("red: best, ≈ tied".into(), MARK_COLOR, false));
    }
    legend(root, h as i32 - legend_h as i32, &entries, 5)
}

/// The legend of a scatter: each series name once, in order of first appearance.
fn scatter_legend(panels: &[ScatterPanel]) -> Vec<(String, RGBColor, bool)> {
    let mut out: Vec<(String, RGBColor, bool)> = Vec::new();
    for s in panels.iter().flat_map(|p| &p.series) {
        if !out.iter().any(|e| e.0 == s.name) {
            out.push((s.name.clone(), color(s.color), s.dashed));
        }
    }
    out
}

/// Ticks of a log10 axis over [lo, hi] (log10 units): 1, 2, 5 times the powers of ten
/// inside it, as the values themselves.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    for e in lo.floor() as i32..=hi.ceil() as i32 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if (lo..=hi).contains(&v.log10()) {
                out.push(v);
            }
        }
    }
    out
}

/// A count as a person reads it: `500k`, `11.2M`, `1.5G`.
pub(crate) fn count_label(v: f64) -> String {
    let (x, unit) = if v >= 1e9 {
        (v / 1e9, "G")
    } else if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    format!("{}{unit}", tick(x))
}

/// The 95% interval of a mean over seeds (the mean itself for one seed).
fn ci_span(s: &Stat) -> (f64, f64) {
    s.ci.unwrap_or((s.mean, s.mean))
}

fn scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x_label: &str,
    y_label: &str,
    panels: &[ScatterPanel],
) -> R {
    let (w, h) = root.dim_in_pixel();
    let entries = scatter_legend(panels);
    let legend_h = legend_height(entries.len(), 3);
    let body = root
        .margin(40, 0, 10, 20)
        .shrink((0, 0), (w - 30, h - legend_h - 40));
    let xs: Vec<f64> = panels
        .iter()
        .flat_map(|p| {
            p.series
                .iter()
                .flat_map(|s| s.points.iter().map(|q| q.0))
                .chain(p.guides.iter().map(|g| g.0))
        })
        .filter(|&x| x > 0.0)
        .map(f64::log10)
        .collect();
    let (xlo, xhi) = match (
        xs.iter().copied().reduce(f64::min),
        xs.iter().copied().reduce(f64::max),
    ) {
        (Some(a), Some(b)) => (a - 0.15, b + 0.15),
        _ => (6.0, 9.0),
    };
    let areas = body.split_evenly((1, panels.len().max(1)));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        scatter_panel(root, area, (x_label, y_label), (xlo, xhi), panel)?;
    }
    legend(root, h as i32 - legend_h as i32, &entries, 3)
}

/// One chart of a scatter in `area`; its ticks and labels are drawn on `root` at the
/// chart's backend coordinates.
fn scatter_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    (x_label, y_label): (&str, &str),
    (xlo, xhi): (f64, f64),
    panel: &ScatterPanel,
) -> R {
    let (ylo, yhi) = y_range(
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| ci_span(&p.1))),
    );
    // Room above the points for the guides' labels.
    let yhi = yhi + (yhi - ylo) * 0.35;
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .caption(panel.title.clone(), font(17.0))
        .x_label_area_size(56)
        .y_label_area_size(64)
        .build_cartesian_2d(xlo..xhi, ylo..yhi)
        .map_err(err)?;
    y_mesh(&mut chart, y_label)?;
    let ticks: Vec<(f64, String)> = log_ticks(xlo, xhi)
        .into_iter()
        .map(|t| (t.log10(), count_label(t)))
        .collect();
    x_axis(root, &chart, (xlo, xhi, ylo), &ticks, x_label)?;
    let guide = RGBColor(200, 200, 200);
    for (x, name) in &panel.guides {
        let x = x.log10();
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x, ylo), (x, yhi)],
                3,
                4,
                guide.stroke_width(1),
            ))
            .map_err(err)?;
        let (px, py) = chart.backend_coord(&(x, yhi));
        root.draw(&Text::new(
            name.clone(),
            (px + 10, py + 6),
            TextStyle::from((FONT, 13.0).into_font().transform(FontTransform::Rotate90))
                .color(&BLACK),
        ))
        .map_err(err)?;
    }
    for s in &panel.series {
        let col = color(s.color);
        for (x, st) in &s.points {
            let p = (x.log10(), st.mean);
            if s.dashed {
                chart
                    .draw_series(std::iter::once(Circle::new(p, 6, col.stroke_width(2))))
                    .map_err(err)?;
                continue;
            }
            if st.ci.is_some() {
                let (a, b) = ci_span(st);
                chart
                    .draw_series(std::iter::once(ErrorBar::new_vertical(
                        p.0,
                        a,
                        st.mean,
                        b,
                        col.stroke_width(2),
                        8,
                    )))
                    .map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(Circle::new(p, 5, col.filled())))
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Which curve of a [`Curve`] a panel draws.
type Pick = fn(&Curve) -> &Vec<(f64, f64)>;

fn training_curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, curves: &[Curve]) -> R {
    let (w, h) = root.dim_in_pixel();
    let legend_h = legend_height(curves.len(), 3);
    let body = root
        .margin(44, 0, 10, 10)
        .shrink((0, 0), (w - 20, h - legend_h - 44));
    let panels = body.split_evenly((1, 2));
    let xmax = curves
        .iter()
        .flat_map(|c| c.loss.iter().chain(&c.acc).map(|p| p.0))
        .fold(1.0f64, f64::max);
    for (k, panel) in panels.iter().enumerate() {
        let (pick, name): (Pick, &str) = if k == 0 {
            (|c| &c.loss, "training loss")
        } else {
            (|c| &c.acc, "contrastive accuracy (%)")
        };
        let lines: Vec<(&[(f64, f64)], RGBColor)> = curves
            .iter()
            .enumerate()
            .map(|(i, c)| (&pick(c)[..], color(i)))
            .collect();
        line_panel(panel, "epoch", name, xmax, &lines)?;
    }
    let entries: Vec<(String, RGBColor, bool)> = curves
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), color(i), false))
        .collect();
    legend(root, h as i32 - legend_h as i32, &entries, 3)
}

/// One chart of lines from x = 0 to `xmax`, its y range fitted to the lines.
fn line_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_label: &str,
    y_label: &str,
    xmax: f64,
    lines: &[(&[(f64, f64)], RGBColor)],
) -> R {
    let (ylo, yhi) = y_range(lines.iter().flat_map(|l| l.0.iter().map(|p| (p.1, p.1))));
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .x_label_area_size(46)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..xmax, ylo..yhi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(font(14.0))
        .axis_desc_style(font(16.0))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .draw()
        .map_err(err)?;
    for (points, c) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(err)?;
    }
    Ok(())
}

/// Line charts side by side, two per row, each with its own y range.
fn small_multiples<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    x_label: &str,
    panels: &[(String, Vec<(f64, f64)>)],
) -> R {
    let rows = panels.len().div_ceil(2).max(1);
    let body = root.margin(44, 0, 10, 10);
    let areas = body.split_evenly((rows, 2));
    for ((name, points), area) in panels.iter().zip(areas.iter()) {
        let xmax = points.iter().map(|p| p.0).fold(1.0f64, f64::max);
        line_panel(area, x_label, name, xmax, &[(&points[..], color(0))])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_control_is_the_colour_floor_and_cells_below_it_share_the_lowest_colour() {
        let v = |m: f64| CellValue::Value {
            stat: Stat::of(&[m]).unwrap(),
            expected: 1,
            seeds: vec![(0, m)],
            mark: Default::default(),
        };
        let values = vec![vec![v(35.0), v(52.0)]];
        assert_eq!(colour_range(&values, &[], Some(39.8)), (39.8, 52.0));
        assert_eq!(heat(35.0, 39.8, 52.0), heat(39.8, 39.8, 52.0));
        // Without a control the floor is 0, not the lowest cell.
        assert_eq!(colour_range(&values, &[], None), (0.0, 52.0));
    }

    #[test]
    fn a_spread_within_noise_of_the_control_does_not_span_the_whole_scale() {
        let v = |m: f64| CellValue::Value {
            stat: Stat::of(&[m]).unwrap(),
            expected: 1,
            seeds: vec![(0, m)],
            mark: Default::default(),
        };
        // The smoke report's case: a 2-point spread just above the control.
        let values = vec![vec![v(39.5), v(40.6), v(41.7)]];
        let (lo, hi) = colour_range(&values, &[], Some(39.7));
        assert_eq!((lo, hi), (39.7, 39.7 + MIN_SPAN));
        // The best cell sits a fifth of the way up, far from the brightest colour.
        assert_ne!(heat(41.7, lo, hi), heat(hi, lo, hi));
        assert!((41.7 - lo) / (hi - lo) <= 0.2 + 1e-9);
    }

    #[test]
    fn a_log_axis_ticks_at_1_2_5_and_names_counts_as_people_read_them() {
        // Figure 7's range: ResNet-18 (11.2M) to ResNet-50 (4x) (375M), padded.
        let ticks = log_ticks(6.9, 8.72);
        assert_eq!(ticks, [1e7, 2e7, 5e7, 1e8, 2e8, 5e8]);
        let names: Vec<String> = ticks.iter().map(|&t| count_label(t)).collect();
        assert_eq!(names, ["10M", "20M", "50M", "100M", "200M", "500M"]);
        assert_eq!(count_label(11_168_832.0), "11.17M");
        assert_eq!(count_label(2e9), "2G");
        assert_eq!(count_label(500.0), "500");
    }

    #[test]
    fn text_is_white_on_dark_and_black_on_light_cells() {
        assert_eq!(*text_on(heat(0.0, 0.0, 1.0)), WHITE);
        assert_eq!(*text_on(heat(1.0, 0.0, 1.0)), BLACK);
    }

    #[test]
    fn bars_outline_the_best_and_mark_ties() {
        let v = |m: f64, mark: Mark| CellValue::Value {
            stat: Stat::of(&[m, m + 1.0]).unwrap(),
            expected: 2,
            seeds: vec![(0, m), (1, m + 1.0)],
            mark,
        };
        let fig = |values: Vec<Vec<CellValue>>| Figure {
            id: "bars".into(),
            title: "Figure 9".into(),
            caption: String::new(),
            plot: Plot::Bars {
                x_label: "batch size".into(),
                y_label: "top-1 (%)".into(),
                groups: vec!["256".into(), "512".into()],
                bars: vec!["100 epochs".into()],
                values,
                reference: None,
            },
        };
        let red = format!(
            "#{:02X}{:02X}{:02X}",
            MARK_COLOR.0, MARK_COLOR.1, MARK_COLOR.2
        );
        let svg = fig(vec![
            vec![v(50.0, Mark::Tied("p = 0.4".into()))],
            vec![v(52.0, Mark::Best)],
        ])
        .svg()
        .unwrap();
        assert!(svg.contains("≈ 50.5") && svg.contains("52.5"), "{svg}");
        assert!(
            svg.contains(&red) && svg.contains("red: best, ≈ tied"),
            "{svg}"
        );
        let svg = fig(vec![vec![v(50.0, Mark::None)], vec![v(52.0, Mark::None)]])
            .svg()
            .unwrap();
        assert!(!svg.contains(&red) && !svg.contains("≈"), "unmarked: {svg}");
    }

    /// Figure 5's full 7 x 7 grid with seeds and a missing cell draws into PNG and SVG.
    #[test]
    fn a_7x7_heatmap_renders_to_png_and_svg() {
        let ops: Vec<String> = crate::ml::config::AugOp::FIGURE5
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let values: Vec<Vec<CellValue>> = (0..7)
            .map(|i| {
                (0..7)
                    .map(|j| match (i, j) {
                        (6, 0) => CellValue::Missing("failed"),
                        _ => CellValue::Value {
                            stat: Stat::of(&[10.0 + (i * 7 + j) as f64, 11.0 + (i * 7 + j) as f64])
                                .unwrap(),
                            expected: 2,
                            seeds: vec![],
                            mark: match (i, j) {
                                (6, 6) => Mark::Best,
                                (6, 5) => Mark::Tied("p = 0.3".into()),
                                _ => Mark::Below("p = 0.01".into()),
                            },
                        },
                    })
                    .collect()
            })
            .collect();
        let row_avg = (0..7).map(|i| Some((20.0 + i as f64, i == 6))).collect();
        let fig = Figure {
            id: "heat".into(),
            title: "Figure 5: top-1 (%) of linear@h".into(),
            caption: String::new(),
            plot: Plot::Heatmap {
                ops,
                values,
                row_avg,
                scale_label: "top-1 (%)".into(),
                floor: Some(15.0),
            },
        };
        let dir = tempfile::tempdir().unwrap();
        let files = fig.write(dir.path(), true, true).unwrap();
        assert_eq!(files.len(), 2);
        let png = image::open(&files[0]).unwrap();
        assert!(png.width() >= 7 * CELL && png.height() >= 7 * CELL);
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("rotate") && svg.contains("failed"));
        // The marks: ≈ before the tied cell's mean, a legend line, red outlines.
        assert!(svg.contains("≈ 57.5") && svg.contains("not distinguishable from the best"));
        let red = format!(
            "#{:02X}{:02X}{:02X}",
            MARK_COLOR.0, MARK_COLOR.1, MARK_COLOR.2
        );
        assert!(svg.contains(&red), "{svg}");
        let png = png.to_rgb8();
        let (c, y_mid) = (CELL as i32, HEAT_Y0 + 6 * CELL as i32 + CELL as i32 / 2);
        let at = |x: i32| png.get_pixel(x as u32, y_mid as u32).0;
        let red = [MARK_COLOR.0, MARK_COLOR.1, MARK_COLOR.2];
        assert_eq!(at(HEAT_X0 + 6 * c + 4), red, "the best cell's outline");
        assert_eq!(at(HEAT_X0 + 5 * c + 4), red, "the tied cell's outline");
        assert_ne!(at(HEAT_X0 + 4 * c + 4), red, "a cell below the best: none");
        if let Some(d) = std::env::var_os("REPORT_KEEP") {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(&files[0], std::path::Path::new(&d).join("heat7.png")).unwrap();
        }
    }
}
