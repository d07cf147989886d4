//! What an inspection found, printed for people (aligned columns, hex
//! addresses) or as JSON for scripts (schema in the crate README).

use crate::decode::Locator;
use crate::failure::Failure;
use crate::free_ranges::{Placement, signed_distance};
use memory_buffers::internals::layout::MAX_ITEMS;
use std::fmt::Write;

/// Version of the JSON output; raised only for changes that break readers.
pub(crate) const SCHEMA: u32 = 1;

/// Everything one inspection found.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    pub(crate) pid: u32,
    /// The rendezvous file's path or the section's name.
    pub(crate) rendezvous: String,
    /// The chain, head first.
    pub(crate) chain: Vec<Locator>,
    pub(crate) near: Option<usize>,
    pub(crate) granularity: usize,
    /// The free ranges near `near`, if it was given.
    /// With the `--reach` (`None`: `rel32` reach) and `--size` asked for.
    pub(crate) placement: Option<(Placement, Option<usize>, usize)>,
}

impl Report {
    fn buffer_count(&self) -> usize {
        self.chain.iter().map(|locator| locator.buffers.len()).sum()
    }
}

fn signed_hex(value: i128) -> String {
    match value {
        0 => "0".into(),
        positive if positive > 0 => format!("+{positive:#x}"),
        negative => format!("-{:#x}", negative.unsigned_abs()),
    }
}

/// Columns, each right- or left-aligned, padded to their widest cell.
fn table(header: &[(&str, bool)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|(name, _)| name.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for ((cell, &(_, right)), width) in cells.zip(header).zip(&widths) {
            if !text.is_empty() {
                text.push_str("  ");
            }
            if right {
                let _ = write!(text, "{cell:>width$}");
            } else {
                let _ = write!(text, "{cell:<width$}");
            }
        }
        out.push_str("  ");
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().map(|(name, _)| *name));
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

/// The report for a terminal.
pub(crate) fn render_text(report: &Report) -> String {
    let mut out = String::new();
    let head = report.chain.first().map_or(0, |locator| locator.address);
    let held = report
        .chain
        .iter()
        .flat_map(|locator| &locator.buffers)
        .filter(|buffer| buffer.held)
        .count();
    let _ = writeln!(
        out,
        "process {}: shared locator at {head:#x}\n  found through {}\n  {} locator{}, {} buffer{} ({} held, {} free)",
        report.pid,
        report.rendezvous,
        report.chain.len(),
        if report.chain.len() == 1 { "" } else { "s" },
        report.buffer_count(),
        if report.buffer_count() == 1 { "" } else { "s" },
        held,
        report.buffer_count() - held,
    );
    if report.buffer_count() > 0 {
        let mut rows = Vec::new();
        for (number, locator) in report.chain.iter().enumerate() {
            for (slot, buffer) in locator.buffers.iter().enumerate() {
                let distance = report.near.map_or_else(
                    || "-".to_string(),
                    |near| signed_hex(buffer.next_free() as i128 - near as i128),
                );
                rows.push(vec![
                    format!("{number}.{slot}"),
                    format!("{:#x}", buffer.base),
                    buffer.size.to_string(),
                    buffer.used.to_string(),
                    buffer.free().to_string(),
                    if buffer.held { "held" } else { "free" }.to_string(),
                    format!("{:#x}", buffer.next_free()),
                    distance,
                ]);
            }
        }
        out.push('\n');
        out.push_str(&table(
            &[
                ("#", false),
                ("address", false),
                ("size", true),
                ("used", true),
                ("free", true),
                ("state", false),
                ("next free", false),
                ("distance", true),
            ],
            &rows,
        ));
    }
    for locator in &report.chain {
        if locator.lock_held {
            let _ = writeln!(
                out,
                "  note: the header lock of locator {:#x} was held (a buffer was being registered)",
                locator.address
            );
        }
    }
    if let (Some(near), Some((placement, reach, size))) = (report.near, &report.placement) {
        let reach = match reach {
            Some(reach) => format!("within {reach:#x} bytes of {near:#x}"),
            None => format!("within rel32 reach of {near:#x}"),
        };
        let _ = writeln!(
            out,
            "\nfree ranges for a {size}-byte buffer ({} bytes mapped) {reach} ([{:#x}, {:#x}]): {} of {}, nearest first",
            placement.block_len,
            placement.min,
            placement.max,
            placement.ranges.len(),
            placement.total_ranges,
        );
        if !placement.ranges.is_empty() {
            let rows: Vec<Vec<String>> = placement
                .ranges
                .iter()
                .map(|range| {
                    vec![
                        format!("{:#x}", range.start),
                        format!("{:#x}", range.end),
                        format!("{:#x}", range.end - range.start),
                        signed_hex(range.distance_from(near)),
                    ]
                })
                .collect();
            out.push_str(&table(
                &[
                    ("start", false),
                    ("end", false),
                    ("size", true),
                    ("distance", true),
                ],
                &rows,
            ));
        }
        match placement.next_buffer_at {
            Some(address) => {
                let _ = writeln!(
                    out,
                    "  a new buffer would be mapped at {address:#x} ({} from {near:#x})",
                    signed_hex(signed_distance(near, address, address + 1))
                );
            }
            None => {
                let _ = writeln!(out, "  no room for a new buffer in that range");
            }
        }
    }
    out
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An address as a JSON string: `"0x7f3b2c3fe000"` (lossless in every
/// JSON reader, unlike numbers above 2^53).
fn json_address(address: usize) -> String {
    format!("\"{address:#x}\"")
}

fn json_optional_address(address: Option<usize>) -> String {
    address.map_or_else(|| "null".into(), json_address)
}

/// The report as one line of JSON.
pub(crate) fn render_json(report: &Report) -> String {
    let mut out = String::new();
    let head = report.chain.first().map_or(0, |locator| locator.address);
    let _ = write!(
        out,
        "{{\"schema\":{SCHEMA},\"pid\":{},\"rendezvous\":{},\"locator\":{},\"granularity\":{},\"near\":{},\"locators\":[",
        report.pid,
        json_string(&report.rendezvous),
        json_address(head),
        report.granularity,
        json_optional_address(report.near),
    );
    for (number, locator) in report.chain.iter().enumerate() {
        if number > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"address\":{},\"next\":{},\"lock_held\":{},\"item_count\":{},\"capacity\":{MAX_ITEMS}}}",
            json_address(locator.address),
            json_optional_address(locator.next),
            locator.lock_held,
            locator.buffers.len(),
        );
    }
    out.push_str("],\"buffers\":[");
    let mut first = true;
    for (number, locator) in report.chain.iter().enumerate() {
        for (slot, buffer) in locator.buffers.iter().enumerate() {
            if !first {
                out.push(',');
            }
            first = false;
            let distance = report.near.map_or_else(
                || "null".to_string(),
                |near| (buffer.next_free() as i128 - near as i128).to_string(),
            );
            let _ = write!(
                out,
                "{{\"locator\":{number},\"slot\":{slot},\"address\":{},\"size\":{},\"used\":{},\"free\":{},\"held\":{},\"next_free\":{},\"distance\":{distance}}}",
                json_address(buffer.base),
                buffer.size,
                buffer.used,
                buffer.free(),
                buffer.held,
                json_address(buffer.next_free()),
            );
        }
    }
    out.push_str("],\"free_ranges\":");
    match (report.near, &report.placement) {
        (Some(near), Some((placement, reach, size))) => {
            let _ = write!(
                out,
                "{{\"reach\":{},\"size\":{size},\"block_len\":{},\"min\":{},\"max\":{},\"total\":{},\"next_buffer_at\":{},\"ranges\":[",
                reach.map_or_else(|| "null".to_string(), |reach| reach.to_string()),
                placement.block_len,
                json_address(placement.min),
                json_address(placement.max),
                placement.total_ranges,
                json_optional_address(placement.next_buffer_at),
            );
            for (index, range) in placement.ranges.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"start\":{},\"end\":{},\"size\":{},\"distance\":{}}}",
                    json_address(range.start),
                    json_address(range.end),
                    range.end - range.start,
                    range.distance_from(near),
                );
            }
            out.push_str("]}");
        }
        _ => out.push_str("null"),
    }
    out.push('}');
    out
}

/// A failure as one line of JSON.
pub(crate) fn render_json_failure(pid: Option<u32>, failure: &Failure) -> String {
    format!(
        "{{\"schema\":{SCHEMA},\"pid\":{},\"error\":{{\"kind\":{},\"message\":{},\"exit_code\":{}}}}}",
        pid.map_or_else(|| "null".into(), |pid| pid.to_string()),
        json_string(failure.kind()),
        json_string(&failure.to_string()),
        failure.exit_code(),
    )
}

#[cfg(all(test, target_pointer_width = "64"))]
mod tests {
    use super::*;
    use crate::decode::{decode_locator, tests::locator_bytes};
    use crate::free_ranges::{Query, Space, free_ranges_near};

    fn sample(near: Option<usize>) -> Report {
        let bytes = locator_bytes(
            0x7f00_0000_0000,
            0,
            0,
            &[
                (0x1000_0000_0000, 4096, 100, 0),
                (0x2000_0000_0000, 8192, 300, 1),
            ],
        );
        let chain = vec![decode_locator(0x7f00_0000_0000, &bytes, true, usize::MAX - 1).unwrap()];
        let placement = near.map(|near| {
            let query = Query {
                near,
                reach: Some(0x10_0000),
                size: 64,
            };
            let space = Space {
                granularity: 4096,
                lowest: 0x1_0000,
                highest: (1 << 47) - 4097,
            };
            (
                free_ranges_near(&[(near - 0x4000, near + 0x3000)], query, space, 16).unwrap(),
                query.reach,
                query.size,
            )
        });
        Report {
            pid: 4242,
            rendezvous: "/tmp/x \"PID\" 4242".into(),
            chain,
            near,
            granularity: 4096,
            placement,
        }
    }

    #[test]
    fn the_text_report_lists_every_buffer_in_aligned_columns() {
        let text = render_text(&sample(Some(0x1000_0000_0000)));
        assert!(
            text.contains("1 locator, 2 buffers (1 held, 1 free)"),
            "{text}"
        );
        let rows: Vec<&str> = text
            .lines()
            .filter(|line| line.trim_start().starts_with("0."))
            .collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].contains("0x100000000000") && rows[0].contains("free"));
        assert!(rows[0].ends_with("+0x64"), "{}", rows[0]);
        assert!(rows[1].contains("held") && rows[1].contains("8192"));
        // Aligned: the size column ends at the same place in both rows.
        let end_of = |row: &str, text: &str| row.find(text).map(|at| at + text.len());
        assert_eq!(end_of(rows[0], " 4096"), end_of(rows[1], " 8192"));
        assert!(
            text.contains("a new buffer would be mapped at 0x100000003000"),
            "{text}"
        );
    }

    #[test]
    fn the_json_report_parses_and_carries_every_field() {
        let json: serde_json::Value =
            serde_json::from_str(&render_json(&sample(Some(0x1000_0000_0000)))).unwrap();
        assert_eq!(json["schema"], 1);
        assert_eq!(json["pid"], 4242);
        assert_eq!(json["rendezvous"], "/tmp/x \"PID\" 4242");
        assert_eq!(json["locator"], "0x7f0000000000");
        assert_eq!(json["locators"][0]["capacity"], 203);
        assert_eq!(json["locators"][0]["next"], serde_json::Value::Null);
        let buffers = json["buffers"].as_array().unwrap();
        assert_eq!(buffers.len(), 2);
        assert_eq!(buffers[0]["address"], "0x100000000000");
        assert_eq!(buffers[0]["used"], 100);
        assert_eq!(buffers[0]["free"], 3996);
        assert_eq!(buffers[0]["held"], false);
        assert_eq!(buffers[0]["distance"], 100);
        assert_eq!(buffers[1]["held"], true);
        assert_eq!(buffers[1]["distance"], 0x1000_0000_0000i64 + 300);
        let free = &json["free_ranges"];
        assert_eq!(free["reach"], 0x10_0000);
        assert_eq!(free["size"], 64);
        assert_eq!(free["block_len"], 4096);
        assert_eq!(free["next_buffer_at"], "0x100000003000");
        assert_eq!(free["ranges"][0]["start"], "0x100000003000");
        assert_eq!(free["ranges"][0]["distance"], 0x3000);
    }

    #[test]
    fn without_near_there_are_no_distances_or_ranges() {
        let report = sample(None);
        let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["near"], serde_json::Value::Null);
        assert_eq!(json["free_ranges"], serde_json::Value::Null);
        assert_eq!(json["buffers"][0]["distance"], serde_json::Value::Null);
        assert!(!render_text(&report).contains("free ranges"));
    }

    #[test]
    fn failures_are_json_too() {
        let failure = Failure::NoLocator {
            pid: 7,
            why: "no \"file\"\n".into(),
        };
        let json: serde_json::Value =
            serde_json::from_str(&render_json_failure(Some(7), &failure)).unwrap();
        assert_eq!(json["error"]["kind"], "no_locator");
        assert_eq!(json["error"]["exit_code"], 5);
        assert_eq!(
            json["error"]["message"],
            "process 7 has no shared locator: no \"file\"\n"
        );
    }

    #[test]
    fn an_empty_locator_reports_no_rows() {
        let mut report = sample(None);
        report.chain[0].buffers.clear();
        let text = render_text(&report);
        assert!(text.contains("0 buffers"), "{text}");
        assert!(!text.contains("address"), "{text}");
    }
}
