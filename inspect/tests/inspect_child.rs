//! The inspector against real processes: this test binary re-runs itself as
//! a child (the role named by an environment variable) that registers known
//! buffers, or has no locator, or plants a garbage one, then waits on its
//! standard input while the test runs `memory-buffers inspect` on it.
//!
//! A 64-bit inspector reads 32-bit processes too. To test that end to end,
//! build this test for the other pointer width and name that binary in
//! `MEMORY_BUFFERS_INSPECT_OTHER_WIDTH_CHILD`: the tests whose names end in
//! `_of_the_other_width` then run it as their child (a 64-bit parent checks
//! that it reads a 32-bit child; a 32-bit parent, that it refuses a 64-bit
//! one). Without it they print why they skip. On x86-64 Linux:
//!
//! ```sh
//! cargo test --target i686-unknown-linux-gnu -p memory-buffers-inspect --no-run
//! # `Executable tests/inspect_child.rs (…/inspect_child-<hash>)` names it:
//! MEMORY_BUFFERS_INSPECT_OTHER_WIDTH_CHILD=…/inspect_child-<hash> \
//!     cargo test -p memory-buffers-inspect
//! ```
//!
//! A plain `main` (no libtest harness): a child must not run the tests, and
//! every test prints one line: `ok`, `FAILED`, or `<test>: skipped:
//! <reason>` on the standard error stream (`skip`).

#[path = "../../tests/support/skip.rs"]
mod skip;

use memory_buffers::{BufferSearchSettings, Buffers, LocatorKind};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

/// Names the role a child process plays.
const ROLE: &str = "MEMORY_BUFFERS_INSPECT_CHILD";

/// Names this test built for the other pointer width (see above).
const OTHER_WIDTH_CHILD: &str = "MEMORY_BUFFERS_INSPECT_OTHER_WIDTH_CHILD";

type Outcome = Result<(), String>;

macro_rules! check {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// A buffer a child asks for: `(min, size, bytes appended, kept held)`.
type Wanted = (usize, usize, usize, bool);

/// Each buffer of the `buffers` child gets a window of its own this long,
/// far from anything mapped, so that each needs a buffer of its own.
const WINDOW: usize = 0x1000_0000;

/// What a child of one pointer width asks for, and what its locator holds.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// The buffers the `buffers` child asks for, each in its own window.
    wanted: [Wanted; 3],
    /// Where the `many` child's window starts.
    many_min: usize,
    /// Items one locator holds (`FORMAT.md`).
    capacity: usize,
    /// Garbage: a *this address* nothing is mapped at, and a next locator
    /// and a buffer base that nothing is mapped at either.
    stale: usize,
    dangling_next: usize,
    bad_item_base: usize,
}

impl Plan {
    /// Buffers the `many` child registers: more than one locator holds, so
    /// the chain has a second locator.
    fn many(&self) -> usize {
        self.capacity + 7
    }
}

/// The plan of a child of `bits` bits; `None` for a 64-bit child of a
/// 32-bit build, whose addresses this build cannot even write down.
fn plan(bits: u32) -> Option<Plan> {
    match bits {
        // Below the program (Linux: from 0x5655_5000; Wine keeps
        // 0x3FE0_0000 to 0x7FFF_0000 for itself) and the libraries mapped
        // down from near 4 GiB. The `many` child is a process of its own
        // and may use the first window again. A next locator in the first
        // page (Linux) or 64 KiB (Windows) that nothing maps.
        32 => Some(Plan {
            wanted: [
                (0x1000_0000, 4096, 100, false),
                (0x2000_0000, 8192, 300, true),
                (0x3000_0000, 5000, 5000, false),
            ],
            many_min: 0x1000_0000,
            capacity: 255,
            stale: 0x7e00_0000,
            dangling_next: 0x1000,
            bad_item_base: 0x1000_0000,
        }),
        // Terabytes away from the program and the libraries.
        #[cfg(target_pointer_width = "64")]
        64 => Some(Plan {
            wanted: [
                (0x100_0000_0000, 4096, 100, false),
                (0x200_0000_0000, 8192, 300, true),
                (0x300_0000_0000, 5000, 5000, false),
            ],
            many_min: 0x400_0000_0000,
            capacity: 203,
            stale: 0x7e00_0000_0000,
            dangling_next: 0x10_0000_0000,
            bad_item_base: 0x100_0000_0000,
        }),
        _ => None,
    }
}

/// This build's own plan.
fn own_plan() -> Result<Plan, String> {
    plan(usize::BITS).ok_or_else(|| format!("no plan for {} bits", usize::BITS))
}

/// One buffer as the child reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Known {
    address: usize,
    size: usize,
    used: usize,
    held: bool,
}

// ---------------------------------------------------------------- children

fn child(role: &str) -> Outcome {
    match role {
        "width" => {
            println!("{}", usize::BITS);
            Ok(())
        }
        "buffers" => child_with_buffers(),
        "many" => child_with_many_buffers(),
        "idle" => wait_for_parent(),
        garbage => garbage::plant(garbage),
    }
}

/// Registers the buffers of its plan, prints them, and waits.
fn child_with_buffers() -> Outcome {
    let mut held = Vec::new();
    for (min, size, append, hold) in own_plan()?.wanted {
        let settings = BufferSearchSettings::new(min, min + WINDOW - 1, size);
        let mut buffer =
            Buffers::get_buffer(&settings).map_err(|error| format!("get_buffer: {error}"))?;
        buffer
            .append_bytes(&vec![0x90; append])
            .map_err(|error| format!("append: {error}"))?;
        println!(
            "buffer {:#x} {} {} {hold}",
            buffer.base_address(),
            buffer.size(),
            buffer.position()
        );
        if hold {
            held.push(buffer);
        }
    }
    let kind = Buffers::locator_kind().map_err(|error| format!("locator_kind: {error}"))?;
    check!(kind == LocatorKind::Shared, "the locator is {kind:?}");
    let locator = Buffers::locator_address().map_err(|error| format!("locator: {error}"))?;
    println!("locator {locator:#x}");
    wait_for_parent()?;
    drop(held);
    Ok(())
}

/// Registers [`Plan::many`] full buffers near each other, prints the
/// locator, and waits.
fn child_with_many_buffers() -> Outcome {
    let plan = own_plan()?;
    let granularity = memory_buffers::allocation_granularity();
    let min = plan.many_min;
    for index in 0..plan.many() {
        let settings = BufferSearchSettings::new(min, min + WINDOW - 1, granularity);
        let mut buffer = Buffers::get_buffer(&settings)
            .map_err(|error| format!("get_buffer {index}: {error}"))?;
        // Full, so that the next request needs a buffer of its own.
        let left = buffer.bytes_left();
        buffer
            .append_bytes(&vec![0xcc; left])
            .map_err(|error| format!("append {index}: {error}"))?;
    }
    let locator = Buffers::locator_address().map_err(|error| format!("locator: {error}"))?;
    println!("locator {locator:#x}");
    wait_for_parent()
}

/// Says it is ready, then waits until the parent closes our input.
fn wait_for_parent() -> Outcome {
    println!("ready");
    std::io::stdout()
        .flush()
        .map_err(|error| error.to_string())?;
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

mod garbage {
    //! Children that plant a rendezvous for themselves, as the library
    //! would (a file on Linux, a named section on Windows), but with bytes
    //! that fail validation.

    #![allow(unsafe_code)]

    use super::{Outcome, wait_for_parent};

    /// The locator bytes of garbage `kind` for a locator living at
    /// `address`, in this build's layout (`FORMAT.md`: pointers of
    /// `usize` bytes, then the lock, flags and count; items of a pointer
    /// and three u32).
    fn bytes(kind: &str, address: usize) -> Result<Vec<u8>, String> {
        let plan = super::own_plan()?;
        let pointer = size_of::<usize>();
        let (count, item) = (2 * pointer + 5, 2 * pointer + 8);
        let mut bytes = vec![0u8; 4096];
        let this = match kind {
            "stale" => plan.stale,
            _ => address,
        };
        bytes[0..pointer].copy_from_slice(&this.to_le_bytes());
        match kind {
            "stale" => {}
            "too_many_items" => bytes[count] = 250,
            "bad_item" => {
                bytes[count] = 1;
                bytes[item..item + pointer].copy_from_slice(&plan.bad_item_base.to_le_bytes());
                let size = item + pointer;
                bytes[size..size + 4].copy_from_slice(&4096u32.to_le_bytes());
                bytes[size + 4..size + 8].copy_from_slice(&5000u32.to_le_bytes());
            }
            "dangling_next" => {
                bytes[pointer..2 * pointer].copy_from_slice(&plan.dangling_next.to_le_bytes())
            }
            other => return Err(format!("unknown role {other}")),
        }
        Ok(bytes)
    }

    #[cfg(target_os = "linux")]
    pub(super) fn plant(kind: &str) -> Outcome {
        use std::fs::{self, OpenOptions};
        use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};

        let path = memory_buffers::internals::rendezvous_path(std::process::id());
        let directory = path.parent().ok_or("no directory")?;
        if !directory.exists() {
            fs::create_dir_all(directory).map_err(|error| error.to_string())?;
            for created in [directory, directory.parent().ok_or("no parent")?] {
                fs::set_permissions(created, fs::Permissions::from_mode(0o1777))
                    .map_err(|error| error.to_string())?;
            }
        }
        let _ = fs::remove_file(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| format!("creating {}: {error}", path.display()))?;
        file.set_len(4096).map_err(|error| error.to_string())?;
        // SAFETY: a fresh shared mapping of the file's one page; nothing in
        // this process ever reads or writes through it (the bytes are
        // written through the file), it only has to exist.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        file.write_all_at(&bytes(kind, address as usize)?, 0)
            .map_err(|error| error.to_string())?;
        wait_for_parent()
    }

    #[cfg(windows)]
    pub(super) fn plant(kind: &str) -> Outcome {
        use windows_sys::Win32::Foundation::INVALID_HANDLE_VALUE;
        use windows_sys::Win32::System::Memory::{
            CreateFileMappingW, FILE_MAP_ALL_ACCESS, MapViewOfFile, PAGE_READWRITE,
        };

        let name = format!(
            "/Reloaded.Memory.Buffers.MemoryBuffer, PID {}",
            std::process::id()
        );
        let wide: Vec<u16> = name.encode_utf16().chain(std::iter::once(0)).collect();
        // SAFETY: `wide` is NUL-terminated and outlives the call; a
        // pagefile-backed section of 64 KiB, as the library makes it. The
        // handle is kept open (leaked) for the life of this child.
        let section = unsafe {
            CreateFileMappingW(
                INVALID_HANDLE_VALUE,
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                65536,
                wide.as_ptr(),
            )
        };
        if section.is_null() {
            return Err(format!(
                "CreateFileMappingW: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a read/write view of the whole new section, kept mapped
        // for the life of this child.
        let view = unsafe { MapViewOfFile(section, FILE_MAP_ALL_ACCESS, 0, 0, 0) };
        if view.Value.is_null() {
            return Err(format!(
                "MapViewOfFile: {}",
                std::io::Error::last_os_error()
            ));
        }
        let address = view.Value as usize;
        let bytes = bytes(kind, address)?;
        // SAFETY: the view is at least 4096 bytes, writable, and nothing
        // else in this process uses it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), view.Value.cast(), bytes.len()) };
        wait_for_parent()
    }
}

// ---------------------------------------------------------------- the parent

/// A program to run as the child: this test, or its build for the other
/// pointer width.
#[derive(Clone, Debug)]
struct Program {
    path: PathBuf,
    /// Its pointer width.
    bits: u32,
}

impl Program {
    fn own() -> Result<Program, String> {
        Ok(Program {
            path: std::env::current_exe().map_err(|error| error.to_string())?,
            bits: usize::BITS,
        })
    }

    /// The build named by [`OTHER_WIDTH_CHILD`], or why there is none.
    /// Named but not of the other width, or not runnable, is an error:
    /// the tests that use it fail rather than skip.
    fn other() -> Result<Program, Result<String, String>> {
        let Some(path) = std::env::var_os(OTHER_WIDTH_CHILD) else {
            return Err(Ok(format!(
                "{OTHER_WIDTH_CHILD} does not name this test built for the other pointer \
                 width (see tests/inspect_child.rs)"
            )));
        };
        let path = PathBuf::from(path);
        let output = Command::new(&path)
            .env(ROLE, "width")
            .output()
            .map_err(|error| Err(format!("running {}: {error}", path.display())))?;
        let bits: u32 = text(&output.stdout).trim().parse().map_err(|_| {
            Err(format!(
                "{} printed {:?} for its width; stderr: {}",
                path.display(),
                text(&output.stdout),
                text(&output.stderr)
            ))
        })?;
        if bits == usize::BITS {
            return Err(Err(format!(
                "{} is {bits}-bit, like this test: build it for the other width",
                path.display()
            )));
        }
        Ok(Program { path, bits })
    }

    fn plan(&self) -> Result<Plan, String> {
        plan(self.bits).ok_or_else(|| format!("no plan for a {}-bit child", self.bits))
    }
}

/// A running child, killed (and its rendezvous file removed) on drop.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Running {
    fn start(program: &Program, role: &str) -> Result<Running, String> {
        let mut child = Command::new(&program.path)
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| {
                format!(
                    "spawning the {role} child {}: {error}",
                    program.path.display()
                )
            })?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Running { child, stdout })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The lines the child printed before `ready`.
    fn lines_until_ready(&mut self) -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = self
                .stdout
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            if read == 0 {
                let status = self.child.wait().map_err(|e| e.to_string())?;
                return Err(format!("the child ended ({status}) after {lines:?}"));
            }
            let line = line.trim_end().to_string();
            if line == "ready" {
                return Ok(lines);
            }
            lines.push(line);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        #[cfg(target_os = "linux")]
        let _ = std::fs::remove_file(memory_buffers::internals::rendezvous_path(self.pid()));
    }
}

fn inspector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memory-buffers"))
}

fn inspect(arguments: &[&str]) -> Result<Output, String> {
    inspector()
        .args(arguments)
        .output()
        .map_err(|error| format!("running the inspector: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn parse_hex(text: &str) -> Option<usize> {
    usize::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Starts the `buffers` child; returns it, its buffers and its locator.
fn start_buffers_child(program: &Program) -> Result<(Running, Vec<Known>, usize), String> {
    let wanted = program.plan()?.wanted;
    let mut running = Running::start(program, "buffers")?;
    let mut known = Vec::new();
    let mut locator = None;
    for line in running.lines_until_ready()? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["buffer", address, size, used, held] => known.push(Known {
                address: parse_hex(address).ok_or(line.clone())?,
                size: size.parse().map_err(|_| line.clone())?,
                used: used.parse().map_err(|_| line.clone())?,
                held: *held == "true",
            }),
            ["locator", address] => locator = parse_hex(address),
            _ => return Err(format!("unexpected line from the child: {line:?}")),
        }
    }
    check!(known.len() == wanted.len(), "the child reported {known:?}");
    for (buffer, (min, size, append, hold)) in known.iter().zip(wanted) {
        check!(
            (min..min + WINDOW).contains(&buffer.address)
                && buffer.size >= size
                && buffer.used == append
                && buffer.held == hold,
            "the child got {buffer:?} for {min:#x}/{size}"
        );
    }
    let locator = locator.ok_or("the child reported no locator")?;
    Ok((running, known, locator))
}

/// Buffers the library registers by itself: on Windows the four ready-made
/// buffers in the locator's own section, in the 60 KiB after the locator
/// (`FORMAT.md`); none on Linux.
fn ready_made(locator: usize, address: usize) -> bool {
    cfg!(windows) && (locator + 4096..locator + 65536).contains(&address)
}

fn lists_exactly_the_childs_buffers(program: &Program) -> Outcome {
    let (running, known, locator) = start_buffers_child(program)?;
    let near = known[1].address;
    let pid = running.pid().to_string();
    let near_text = format!("{near:#x}");
    let output = inspect(&["inspect", &pid, "--near", &near_text])?;
    let stdout = text(&output.stdout);
    check!(
        output.status.success(),
        "exit {:?}: {}{stdout}",
        output.status.code(),
        text(&output.stderr)
    );
    check!(
        stdout.contains(&format!(
            "process {pid} ({}-bit): shared locator at {locator:#x}",
            program.bits
        )),
        "no {}-bit locator {locator:#x} in:\n{stdout}",
        program.bits
    );
    // Every buffer row: `#  address  size  used  free  state  next  distance`.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|words| words.len() == 8 && words[0].contains('.') && words[1].starts_with("0x"))
        .collect();
    let mut listed = Vec::new();
    for row in &rows {
        let address = parse_hex(row[1]).ok_or(format!("{row:?}"))?;
        if ready_made(locator, address) {
            continue;
        }
        let size: usize = row[2].parse().map_err(|_| format!("{row:?}"))?;
        let used: usize = row[3].parse().map_err(|_| format!("{row:?}"))?;
        let free: usize = row[4].parse().map_err(|_| format!("{row:?}"))?;
        check!(size - used == free, "free bytes wrong in {row:?}");
        check!(
            parse_hex(row[6]) == Some(address + used),
            "next free wrong in {row:?}"
        );
        let distance = (address + used) as i128 - near as i128;
        let shown = if distance >= 0 {
            format!("+{distance:#x}")
        } else {
            format!("-{:#x}", -distance)
        };
        check!(
            row[7] == shown || (distance == 0 && row[7] == "0"),
            "distance {} in {row:?}, expected {shown}",
            row[7]
        );
        listed.push(Known {
            address,
            size,
            used,
            held: match row[5] {
                "held" => true,
                "free" => false,
                other => return Err(format!("state {other} in {row:?}")),
            },
        });
    }
    check!(
        listed == known,
        "the inspector listed {listed:?}, the child has {known:?}:\n{stdout}"
    );
    check!(
        stdout.contains("free ranges for a") && stdout.contains("a new buffer would be mapped at"),
        "no free ranges in:\n{stdout}"
    );
    Ok(())
}

fn json_output_matches_the_child(program: &Program) -> Outcome {
    let (running, known, locator) = start_buffers_child(program)?;
    let near = known[0].address;
    let pid = running.pid().to_string();
    let near_text = format!("{near:#x}");
    let output = inspect(&["inspect", &pid, "--near", &near_text, "--json"])?;
    check!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        text(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("{error} in {}", text(&output.stdout)))?;
    let address = |value: &serde_json::Value| value.as_str().and_then(parse_hex);
    check!(json["schema"] == 1, "schema {}", json["schema"]);
    check!(json["pid"] == running.pid(), "pid {}", json["pid"]);
    check!(
        json["pointer_width"] == program.bits,
        "pointer_width {}",
        json["pointer_width"]
    );
    check!(
        json["locators"][0]["capacity"] == program.plan()?.capacity,
        "capacity {}",
        json["locators"][0]["capacity"]
    );
    check!(
        address(&json["locator"]) == Some(locator),
        "locator {}",
        json["locator"]
    );
    check!(
        address(&json["locators"][0]["address"]) == Some(locator),
        "locators {}",
        json["locators"]
    );
    check!(
        address(&json["near"]) == Some(near),
        "near {}",
        json["near"]
    );
    let buffers = json["buffers"].as_array().ok_or("no buffers array")?;
    let mut listed = Vec::new();
    for buffer in buffers {
        let base = address(&buffer["address"]).ok_or(format!("{buffer}"))?;
        if ready_made(locator, base) {
            continue;
        }
        let number = |field: &str| buffer[field].as_u64().map(|n| n as usize);
        let (size, used, free) = (
            number("size").ok_or(format!("{buffer}"))?,
            number("used").ok_or(format!("{buffer}"))?,
            number("free").ok_or(format!("{buffer}"))?,
        );
        check!(size - used == free, "free wrong in {buffer}");
        check!(
            address(&buffer["next_free"]) == Some(base + used),
            "next_free wrong in {buffer}"
        );
        check!(
            buffer["distance"].as_i64() == Some((base + used) as i64 - near as i64),
            "distance wrong in {buffer}"
        );
        listed.push(Known {
            address: base,
            size,
            used,
            held: buffer["held"].as_bool().ok_or(format!("{buffer}"))?,
        });
    }
    check!(
        listed == known,
        "the JSON lists {listed:?}, the child has {known:?}"
    );
    let free = &json["free_ranges"];
    let ranges = free["ranges"].as_array().ok_or(format!("{free}"))?;
    check!(!ranges.is_empty(), "no free range near {near:#x}: {free}");
    let next = address(&free["next_buffer_at"]).ok_or(format!("{free}"))?;
    let (min, max) = (
        address(&free["min"]).ok_or(format!("{free}"))?,
        address(&free["max"]).ok_or(format!("{free}"))?,
    );
    // `within_rel32_reach`: 2 GiB either way, clamped to the space.
    check!(
        min == near.saturating_sub(0x7fff_ffff) && max >= near && max - near <= 0x7fff_fffe,
        "[{min:#x}, {max:#x}] is not the rel32 reach of {near:#x}"
    );
    // The library aims at the target, `near`, and takes the free block
    // nearest to it: no free range comes nearer to it than the block it
    // takes (whose start is up to a block from the range's nearest byte).
    // In 4 GiB the reach runs into an end, where it still aims at `near`,
    // not at the middle of the range.
    let aim = near.clamp(min, max);
    let block = free["block_len"].as_u64().ok_or(format!("{free}"))? as usize;
    let mut inside = false;
    for range in ranges {
        let (start, end) = (
            address(&range["start"]).ok_or(format!("{range}"))?,
            address(&range["end"]).ok_or(format!("{range}"))?,
        );
        check!(start < end, "empty range {range}");
        inside |= (start..end).contains(&next);
        let nearest = aim.clamp(start, end - 1);
        check!(
            next.abs_diff(aim) <= nearest.abs_diff(aim) + block,
            "a new buffer would go to {next:#x}, but {range} is nearer to the target \
             {aim:#x} in [{min:#x}, {max:#x}]"
        );
    }
    check!(
        inside || ranges.len() < free["total"].as_u64().unwrap_or(0) as usize,
        "a new buffer would go to {next:#x}, in none of the free ranges {ranges:?}"
    );
    // In a 64-bit process, whose space has room around `near` (where the
    // child's buffer is), the new buffer lands next to it.
    if program.bits == 64 {
        check!(
            next.abs_diff(near) <= 0x10_0000,
            "a new buffer would go to {next:#x}, far from {near:#x}"
        );
    }
    for range in ranges {
        let (start, end) = (
            address(&range["start"]).ok_or(format!("{range}"))?,
            address(&range["end"]).ok_or(format!("{range}"))?,
        );
        check!(start < end, "empty range {range}");
        for buffer in &known {
            check!(
                end <= buffer.address || start >= buffer.address + buffer.size,
                "free range {range} overlaps {buffer:?}"
            );
        }
    }
    Ok(())
}

fn a_chain_of_locators_is_followed(program: &Program) -> Outcome {
    let plan = program.plan()?;
    let mut running = Running::start(program, "many")?;
    let lines = running.lines_until_ready()?;
    let locator = lines
        .iter()
        .find_map(|line| line.strip_prefix("locator ").and_then(parse_hex))
        .ok_or(format!("no locator in {lines:?}"))?;
    let pid = running.pid().to_string();
    let output = inspect(&["inspect", &pid, "--json"])?;
    check!(
        output.status.success(),
        "exit {:?}: {}",
        output.status.code(),
        text(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|error| format!("{error} in {}", text(&output.stdout)))?;
    let locators = json["locators"].as_array().ok_or("no locators")?;
    check!(locators.len() == 2, "{} locators: {json}", locators.len());
    check!(
        locators[0]["address"].as_str().and_then(parse_hex) == Some(locator),
        "head {}",
        locators[0]["address"]
    );
    check!(
        locators[0]["next"] == locators[1]["address"] && locators[1]["next"].is_null(),
        "links {} -> {}",
        locators[0]["next"],
        locators[1]["address"]
    );
    check!(
        locators[0]["item_count"] == plan.capacity,
        "the head holds {}, not {}",
        locators[0]["item_count"],
        plan.capacity
    );
    let buffers = json["buffers"].as_array().ok_or("no buffers")?;
    let ours: Vec<_> = buffers
        .iter()
        .filter(|buffer| {
            let base = buffer["address"].as_str().and_then(parse_hex).unwrap_or(0);
            !ready_made(locator, base)
        })
        .collect();
    check!(
        ours.len() == plan.many(),
        "{} buffers listed, not {}",
        ours.len(),
        plan.many()
    );
    for buffer in &ours {
        check!(
            buffer["free"] == 0 && buffer["held"] == false,
            "not a full, free buffer: {buffer}"
        );
    }
    check!(
        buffers.last().is_some_and(|last| last["locator"] == 1),
        "the last buffer is not in the second locator"
    );
    Ok(())
}

fn an_exited_process_is_refused() -> Outcome {
    let mut running = Running::start(&Program::own()?, "idle")?;
    running.lines_until_ready()?;
    let pid = running.pid().to_string();
    running.child.kill().map_err(|error| error.to_string())?;
    // Not waited for: on Linux it stays a zombie until `Running` drops.
    #[cfg(target_os = "linux")]
    let message = {
        let status = format!("/proc/{pid}/status");
        let zombie = || {
            std::fs::read_to_string(&status)
                .is_ok_and(|text| text.lines().any(|line| line.starts_with("State:\tZ")))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !zombie() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        check!(zombie(), "the child did not become a zombie");
        format!("process {pid} has exited")
    };
    #[cfg(not(target_os = "linux"))]
    let message = {
        std::thread::sleep(std::time::Duration::from_millis(200));
        format!("no process with id {pid}")
    };
    expect_failure(&["inspect", &pid], 3, &message)
}

/// A pid beyond any the kernel hands out.
fn unused_pid() -> String {
    #[cfg(target_os = "linux")]
    {
        let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(4_194_304);
        (max + 1).to_string()
    }
    #[cfg(not(target_os = "linux"))]
    {
        // Windows process ids are multiples of 4.
        "4294967293".to_string()
    }
}

fn expect_failure(arguments: &[&str], code: i32, message: &str) -> Outcome {
    let output = inspect(arguments)?;
    let stderr = text(&output.stderr);
    check!(
        output.status.code() == Some(code),
        "{arguments:?}: exit {:?}, expected {code}; stderr: {stderr}",
        output.status.code()
    );
    check!(
        stderr.contains(message),
        "{arguments:?}: {stderr:?} lacks {message:?}"
    );
    check!(!stderr.contains("panicked"), "{arguments:?}: {stderr}");
    Ok(())
}

fn help_is_printed_and_usage_errors_point_to_it() -> Outcome {
    let output = inspect(&["--help"])?;
    check!(output.status.success(), "--help: {:?}", output.status);
    let stdout = text(&output.stdout);
    check!(
        stdout.starts_with("usage: memory-buffers inspect <pid>") && stdout.contains("--json"),
        "{stdout}"
    );
    expect_failure(&[], 2, "no command given")?;
    expect_failure(&["inspect", "1", "--near", "nowhere"], 2, "is not a number")?;
    expect_failure(&["show", "1"], 2, "see memory-buffers --help")
}

fn bad_pids_are_refused() -> Outcome {
    expect_failure(&["inspect", "0"], 2, "not a process id")?;
    expect_failure(&["inspect", "-1"], 2, "unknown option")?;
    expect_failure(&["inspect", "twelve"], 2, "not a process id")?;
    expect_failure(&["inspect"], 2, "no process id")?;
    let unused = unused_pid();
    expect_failure(
        &["inspect", &unused],
        3,
        &format!("no process with id {unused}"),
    )?;
    // Scripts get the failure as JSON too.
    let output = inspect(&["inspect", &unused, "--json"])?;
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())?;
    check!(
        json["error"]["kind"] == "no_such_process" && json["error"]["exit_code"] == 3,
        "{json}"
    );
    Ok(())
}

fn a_process_without_a_locator_is_reported() -> Outcome {
    let mut running = Running::start(&Program::own()?, "idle")?;
    running.lines_until_ready()?;
    // The idle child never uses the library: any file under its id is a
    // leftover of an earlier process with the same id.
    #[cfg(target_os = "linux")]
    let _ = std::fs::remove_file(memory_buffers::internals::rendezvous_path(running.pid()));
    let pid = running.pid().to_string();
    expect_failure(
        &["inspect", &pid],
        5,
        &format!("process {pid} has no shared locator"),
    )
}

fn garbage_locators_are_refused(program: &Program) -> Outcome {
    let stale = if cfg!(windows) {
        "is not the start of a view of a section in the process"
    } else {
        "is not mapped in the process"
    };
    // A 32-bit locator holds 255 items, as many as its u8 count can say:
    // 250 is in range there, and the first of its zero items is garbage.
    let too_many = if program.bits == 64 {
        "item count is 250"
    } else {
        "item 0: its base address is 0"
    };
    for (role, message) in [
        ("stale", stale),
        ("too_many_items", too_many),
        ("bad_item", "item 0: 5000 bytes used of a 4096-byte buffer"),
        ("dangling_next", "is not readable memory of the process"),
    ] {
        let mut running = Running::start(program, role)?;
        running.lines_until_ready()?;
        let pid = running.pid().to_string();
        expect_failure(&["inspect", &pid], 6, message).map_err(|why| format!("{role}: {why}"))?;
        expect_failure(&["inspect", &pid], 6, "fails validation")
            .map_err(|why| format!("{role}: {why}"))?;
    }
    Ok(())
}

/// Wine runs every program as one user: there is no other to refuse.
#[cfg(not(target_os = "linux"))]
fn a_foreign_user_is_refused() -> Result<Option<&'static str>, String> {
    Ok(Some(
        "Linux only: a second user cannot be set up from a test on Windows or Wine",
    ))
}

/// Root runs the inspector as `nobody` against a child of root's.
#[cfg(target_os = "linux")]
fn a_foreign_user_is_refused() -> Result<Option<&'static str>, String> {
    use std::os::unix::process::CommandExt;
    // SAFETY: `geteuid` has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Some(
            "not root: cannot run the inspector as another user than the child's",
        ));
    }
    let (running, _, _) = start_buffers_child(&Program::own()?)?;
    let pid = running.pid().to_string();
    let mut command = inspector();
    command.args(["inspect", &pid]);
    // SAFETY: only async-signal-safe calls (`setgroups`, `setgid`,
    // `setuid`) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let nobody = 65534;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(nobody) != 0
                || libc::setuid(nobody) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let output = command
        .output()
        .map_err(|error| format!("running the inspector as nobody: {error}"))?;
    let stderr = text(&output.stderr);
    check!(
        output.status.code() == Some(4),
        "exit {:?}; stderr: {stderr}",
        output.status.code()
    );
    check!(
        stderr.contains("not allowed to read the rendezvous file")
            && stderr.contains(&format!("of process {pid}"))
            && stderr.contains("CAP_SYS_PTRACE"),
        "unclear refusal: {stderr}"
    );
    Ok(None)
}

/// A 64-bit child of a 32-bit inspector: refused, saying what to run
/// instead, whatever its locator holds.
fn a_wider_process_is_refused(program: &Program) -> Outcome {
    let mut running = Running::start(program, "buffers")?;
    running.lines_until_ready()?;
    let pid = running.pid().to_string();
    expect_failure(
        &["inspect", &pid],
        7,
        &format!("process {pid} is a 64-bit process, and this inspector is a 32-bit program"),
    )?;
    let output = inspect(&["inspect", &pid, "--json"])?;
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|error| error.to_string())?;
    check!(
        json["error"]["kind"] == "unsupported" && json["error"]["exit_code"] == 7,
        "{json}"
    );
    Ok(())
}

/// A test's outcome: passed, skipped (why) or failed (why).
type Verdict = Result<Option<String>, String>;

/// A test of a child process, given the program to run as the child.
type ChildTest = fn(&Program) -> Outcome;

type Test = (String, Box<dyn Fn() -> Verdict>);

/// A test that needs no child, or starts its own.
type PlainTest = fn() -> Outcome;

fn always(test: PlainTest) -> Box<dyn Fn() -> Verdict> {
    Box::new(move || test().map(|()| None))
}

/// A test of a child, run with this test as the child.
fn own_width(test: ChildTest) -> Box<dyn Fn() -> Verdict> {
    Box::new(move || test(&Program::own()?).map(|()| None))
}

/// A test of a child, run with the other width's build as the child if
/// `applies` to its width; skipped, saying why, otherwise.
fn other_width(
    other: &Result<Program, Result<String, String>>,
    applies: fn(u32) -> Result<(), String>,
    test: ChildTest,
) -> Box<dyn Fn() -> Verdict> {
    let other = other.clone();
    Box::new(move || match &other {
        Ok(program) => match applies(program.bits) {
            Ok(()) => test(program).map(|()| None),
            Err(why) => Ok(Some(why)),
        },
        Err(Ok(why)) => Ok(Some(why.clone())),
        Err(Err(why)) => Err(why.clone()),
    })
}

/// A child no wider than this inspector is read.
fn is_readable(bits: u32) -> Result<(), String> {
    if bits <= usize::BITS {
        Ok(())
    } else {
        Err(format!(
            "the other-width child is {bits}-bit, and this {}-bit inspector refuses it \
             (a_wider_process_is_refused_of_the_other_width)",
            usize::BITS
        ))
    }
}

/// A child wider than this inspector is refused.
fn is_wider(bits: u32) -> Result<(), String> {
    if bits > usize::BITS {
        Ok(())
    } else {
        Err(format!(
            "the other-width child is {bits}-bit, which this {}-bit inspector reads \
             (the other _of_the_other_width tests)",
            usize::BITS
        ))
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        if let Err(message) = child(&role) {
            eprintln!("child {role}: {message}");
            std::process::exit(1);
        }
        return;
    }
    let other = Program::other();
    let child_tests: [(&str, ChildTest); 4] = [
        (
            "lists_exactly_the_childs_buffers",
            lists_exactly_the_childs_buffers,
        ),
        (
            "json_output_matches_the_child",
            json_output_matches_the_child,
        ),
        (
            "a_chain_of_locators_is_followed",
            a_chain_of_locators_is_followed,
        ),
        ("garbage_locators_are_refused", garbage_locators_are_refused),
    ];
    let mut tests: Vec<Test> = Vec::new();
    for (name, test) in child_tests {
        tests.push((name.to_string(), own_width(test)));
    }
    let plain: [(&str, PlainTest); 4] = [
        (
            "help_is_printed_and_usage_errors_point_to_it",
            help_is_printed_and_usage_errors_point_to_it,
        ),
        ("bad_pids_are_refused", bad_pids_are_refused),
        ("an_exited_process_is_refused", an_exited_process_is_refused),
        (
            "a_process_without_a_locator_is_reported",
            a_process_without_a_locator_is_reported,
        ),
    ];
    for (name, test) in plain {
        tests.push((name.to_string(), always(test)));
    }
    tests.push((
        "a_foreign_user_is_refused".to_string(),
        Box::new(|| a_foreign_user_is_refused().map(|skip| skip.map(str::to_string))),
    ));
    for (name, test) in child_tests {
        tests.push((
            format!("{name}_of_the_other_width"),
            other_width(&other, is_readable, test),
        ));
    }
    tests.push((
        "a_wider_process_is_refused_of_the_other_width".to_string(),
        other_width(&other, is_wider, a_wider_process_is_refused),
    ));
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|argument| !argument.starts_with('-'))
        .collect();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|wanted| name.contains(wanted.as_str())) {
            continue;
        }
        match test() {
            Ok(None) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Ok(Some(reason)) => {
                skip::skip_named(&name, &reason);
                skipped += 1;
            }
            Err(message) => {
                println!("test {name} ... FAILED\n    {message}");
                failed += 1;
            }
        }
    }
    println!("inspect_child: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        std::process::exit(1);
    }
}
