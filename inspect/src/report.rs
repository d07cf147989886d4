//! What an inspection found, printed for people (aligned columns, hex
//! addresses) or as JSON for scripts (schema in the crate README).

use crate::decode::Locator;
use crate::failure::Failure;
use crate::free_ranges::{Placement, signed_offset};
use crate::width::Width;
use std::fmt::Write;

/// Version of the JSON output; raised only for changes that break readers.
pub(crate) const SCHEMA: u32 = 1;

/// Everything one inspection found.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    pub(crate) pid: u32,
    /// The process's pointer width, which its locators' layout follows.
    pub(crate) width: Width,
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
        "process {} ({}-bit): shared locator at {head:#x}\n  found through {}\n  {} locator{}, {} buffer{} ({} held, {} free)",
        report.pid,
        report.width.bits(),
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
                    |near| signed_hex(signed_offset(near, buffer.next_free())),
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
                        format!("{:#x}", range.len()),
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
                    signed_hex(signed_offset(near, address as u64))
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
/// JSON reader, unlike numbers above 2^53). A `u64`, for the ends of
/// ranges and buffers, which at the top of a 32-bit space are 2^32.
fn json_address(address: impl Into<u64>) -> String {
    format!("\"{:#x}\"", address.into())
}

/// An address of the process (any `usize` is one of our addresses).
fn json_usize(address: usize) -> String {
    json_address(address as u64)
}

fn json_optional_address(address: Option<usize>) -> String {
    address.map_or_else(|| "null".into(), json_usize)
}

/// The report as one line of JSON.
pub(crate) fn render_json(report: &Report) -> String {
    let mut out = String::new();
    let head = report.chain.first().map_or(0, |locator| locator.address);
    let _ = write!(
        out,
        "{{\"schema\":{SCHEMA},\"pid\":{},\"pointer_width\":{},\"rendezvous\":{},\"locator\":{},\"granularity\":{},\"near\":{},\"locators\":[",
        report.pid,
        report.width.bits(),
        json_string(&report.rendezvous),
        json_usize(head),
        report.granularity,
        json_optional_address(report.near),
    );
    for (number, locator) in report.chain.iter().enumerate() {
        if number > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"address\":{},\"next\":{},\"lock_held\":{},\"item_count\":{},\"capacity\":{}}}",
            json_usize(locator.address),
            json_optional_address(locator.next),
            locator.lock_held,
            locator.buffers.len(),
            report.width.layout().max_items,
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
                |near| signed_offset(near, buffer.next_free()).to_string(),
            );
            let _ = write!(
                out,
                "{{\"locator\":{number},\"slot\":{slot},\"address\":{},\"size\":{},\"used\":{},\"free\":{},\"held\":{},\"next_free\":{},\"distance\":{distance}}}",
                json_usize(buffer.base),
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
                json_usize(placement.min),
                json_usize(placement.max),
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
                    range.len(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_locator, tests::locator_bytes};
    use crate::free_ranges::{Query, Space, free_ranges_near};

    /// A process to report on: its width, its locator's address, two
    /// buffers' and its top of user space.
    #[derive(Clone, Copy, Debug)]
    struct Process {
        width: Width,
        locator: usize,
        bases: [usize; 2],
        highest: usize,
    }

    /// A 32-bit process and a 64-bit one whose addresses fit in 32 bits
    /// (both on every inspector), and a 64-bit one with 47-bit addresses.
    fn processes() -> Vec<Process> {
        let narrow = [
            Process {
                width: Width::Bits32,
                locator: 0xf7f0_0000,
                bases: [0x1000_0000, 0x2000_0000],
                highest: 0xffff_dfff,
            },
            Process {
                width: Width::Bits64,
                locator: 0x7f00_0000,
                bases: [0x1000_0000, 0x2000_0000],
                highest: 0xffff_dfff,
            },
        ];
        #[cfg(target_pointer_width = "64")]
        let wide = Some(Process {
            width: Width::Bits64,
            locator: 0x7f00_0000_0000,
            bases: [0x1000_0000_0000, 0x2000_0000_0000],
            highest: (1 << 47) - 4097,
        });
        #[cfg(target_pointer_width = "32")]
        let wide = None;
        narrow.into_iter().chain(wide).collect()
    }

    fn sample(process: Process, near: Option<usize>) -> Report {
        let bytes = locator_bytes(
            process.width,
            process.locator as u64,
            0,
            0,
            &[
                (process.bases[0] as u64, 4096, 100, 0),
                (process.bases[1] as u64, 8192, 300, 1),
            ],
        );
        let chain = vec![
            decode_locator(process.locator, &bytes, process.width, true, usize::MAX - 1).unwrap(),
        ];
        let placement = near.map(|near| {
            let query = Query {
                near,
                reach: Some(0x10_0000),
                size: 64,
            };
            let space = Space {
                granularity: 4096,
                lowest: 0x1_0000,
                highest: process.highest,
            };
            (
                free_ranges_near(&[(near - 0x4000, near + 0x3000)], query, space, 16).unwrap(),
                query.reach,
                query.size,
            )
        });
        Report {
            pid: 4242,
            width: process.width,
            rendezvous: "/tmp/x \"PID\" 4242".into(),
            chain,
            near,
            granularity: 4096,
            placement,
        }
    }

    #[test]
    fn the_text_report_lists_every_buffer_in_aligned_columns() {
        for process in processes() {
            let [first, _] = process.bases;
            let text = render_text(&sample(process, Some(first)));
            assert!(
                text.starts_with(&format!(
                    "process 4242 ({}-bit): shared locator at {:#x}\n",
                    process.width.bits(),
                    process.locator
                )),
                "{text}"
            );
            assert!(
                text.contains("1 locator, 2 buffers (1 held, 1 free)"),
                "{text}"
            );
            let rows: Vec<&str> = text
                .lines()
                .filter(|line| line.trim_start().starts_with("0."))
                .collect();
            assert_eq!(rows.len(), 2, "{text}");
            assert!(rows[0].contains(&format!("{first:#x}")) && rows[0].contains("free"));
            assert!(rows[0].ends_with("+0x64"), "{}", rows[0]);
            assert!(rows[1].contains("held") && rows[1].contains("8192"));
            // Aligned: the size column ends at the same place in both rows.
            let end_of = |row: &str, text: &str| row.find(text).map(|at| at + text.len());
            assert_eq!(end_of(rows[0], " 4096"), end_of(rows[1], " 8192"));
            assert!(
                text.contains(&format!(
                    "a new buffer would be mapped at {:#x} (+0x3000 from {first:#x})",
                    first + 0x3000
                )),
                "{text}"
            );
        }
    }

    #[test]
    fn the_json_report_parses_and_carries_every_field() {
        for process in processes() {
            let [first, second] = process.bases;
            let json: serde_json::Value =
                serde_json::from_str(&render_json(&sample(process, Some(first)))).unwrap();
            let hex = |address: usize| format!("{address:#x}");
            assert_eq!(json["schema"], 1);
            assert_eq!(json["pid"], 4242);
            assert_eq!(json["pointer_width"], process.width.bits());
            assert_eq!(json["rendezvous"], "/tmp/x \"PID\" 4242");
            assert_eq!(json["locator"], hex(process.locator));
            let capacity = match process.width {
                Width::Bits32 => 255,
                Width::Bits64 => 203,
            };
            assert_eq!(json["locators"][0]["capacity"], capacity, "{process:?}");
            assert_eq!(json["locators"][0]["next"], serde_json::Value::Null);
            let buffers = json["buffers"].as_array().unwrap();
            assert_eq!(buffers.len(), 2);
            assert_eq!(buffers[0]["address"], hex(first));
            assert_eq!(buffers[0]["used"], 100);
            assert_eq!(buffers[0]["free"], 3996);
            assert_eq!(buffers[0]["held"], false);
            assert_eq!(buffers[0]["distance"], 100);
            assert_eq!(buffers[1]["held"], true);
            assert_eq!(buffers[1]["next_free"], hex(second + 300));
            assert_eq!(
                buffers[1]["distance"],
                (second - first) as i64 + 300,
                "{process:?}"
            );
            let free = &json["free_ranges"];
            assert_eq!(free["reach"], 0x10_0000);
            assert_eq!(free["size"], 64);
            assert_eq!(free["block_len"], 4096);
            assert_eq!(free["next_buffer_at"], hex(first + 0x3000));
            assert_eq!(free["ranges"][0]["start"], hex(first + 0x3000));
            assert_eq!(free["ranges"][0]["distance"], 0x3000);
        }
    }

    #[test]
    fn ends_at_the_top_of_a_32_bit_space_are_2_to_the_32() {
        // A full buffer in the last page of a space that reaches
        // 0xFFFF_FFFF, and the free range just below it.
        let bytes = locator_bytes(Width::Bits32, 0x5000, 0, 0, &[(0xffff_f000, 4096, 4096, 0)]);
        let chain = vec![decode_locator(0x5000, &bytes, Width::Bits32, true, 0xffff_ffff).unwrap()];
        let near = 0xffff_f000;
        let query = Query {
            near,
            reach: Some(0x1_0000),
            size: 64,
        };
        let space = Space {
            granularity: 4096,
            lowest: 0x1_0000,
            highest: 0xffff_ffff,
        };
        let mapped = [(0xffff_f000, 0xffff_ffff)];
        let placement = free_ranges_near(&mapped, query, space, 16).unwrap();
        let report = Report {
            pid: 7,
            width: Width::Bits32,
            rendezvous: "r".into(),
            chain,
            near: Some(near),
            granularity: 4096,
            placement: Some((placement, query.reach, query.size)),
        };
        let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["buffers"][0]["next_free"], "0x100000000");
        assert_eq!(json["buffers"][0]["distance"], 0x1000);
        assert_eq!(json["free_ranges"]["max"], "0xffffffff");
        let ranges = json["free_ranges"]["ranges"].as_array().unwrap();
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        assert_eq!(ranges[0]["start"], "0xfffef000");
        assert_eq!(ranges[0]["end"], "0xfffff000");
        let text = render_text(&report);
        assert!(text.contains("0x100000000"), "{text}");
    }

    #[test]
    fn without_near_there_are_no_distances_or_ranges() {
        for process in processes() {
            let report = sample(process, None);
            let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
            assert_eq!(json["near"], serde_json::Value::Null);
            assert_eq!(json["free_ranges"], serde_json::Value::Null);
            assert_eq!(json["buffers"][0]["distance"], serde_json::Value::Null);
            assert!(!render_text(&report).contains("free ranges"));
        }
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
        for process in processes() {
            let mut report = sample(process, None);
            report.chain[0].buffers.clear();
            let text = render_text(&report);
            assert!(text.contains("0 buffers"), "{text}");
            assert!(!text.contains("address"), "{text}");
        }
    }
}
