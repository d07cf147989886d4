//! The command line, parsed by hand (four options do not need a crate).

use crate::failure::Failure;
use std::ffi::OsString;

/// The usage text, printed by `--help` and after usage errors.
pub(crate) const USAGE: &str = "\
usage: memory-buffers inspect <pid> [--near ADDRESS] [--reach BYTES] [--size BYTES] [--json]

Shows the shared buffers that the memory-buffers locator of process <pid>
holds, and with --near the free ranges near ADDRESS where a new buffer
could be placed.

  --near ADDRESS  show each buffer's distance to ADDRESS, and the free
                  ranges within --reach of it
  --reach BYTES   how far from --near to look (default: exactly the reach
                  of a rel32 jump or call, as within_rel32_reach)
  --size BYTES    size of the new buffer to place (default: one page)
  --json          print JSON (schema in the crate README)

Numbers are decimal or 0x-prefixed hexadecimal; '_' may separate digits.
Exit codes: 0 ok, 1 system error, 2 usage, 3 no such process,
4 permission denied, 5 no locator, 6 invalid locator, 7 unsupported system.";

/// What to inspect and how to print it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) pid: u32,
    pub(crate) near: Option<usize>,
    /// `None`: `rel32` reach, as `within_rel32_reach`.
    pub(crate) reach: Option<usize>,
    /// `None`: one allocation granule.
    pub(crate) size: Option<usize>,
    pub(crate) json: bool,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Help,
    Inspect(Options),
}

/// Whether the command line asks for JSON, looked up before parsing so that
/// even usage errors are reported as JSON to scripts that asked for it.
pub(crate) fn wants_json(arguments: &[OsString]) -> bool {
    arguments.iter().any(|argument| argument == "--json")
}

/// Parses a number: decimal, or hexadecimal after `0x`; `_` separators.
pub(crate) fn parse_number(text: &str) -> Option<usize> {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (hex.to_string(), 16),
        None => (digits, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    usize::from_str_radix(&digits, radix).ok()
}

/// Whether `text` is a number in [`parse_number`]'s syntax, only too large
/// for a `usize` (a 64-bit address given to a 32-bit inspector).
fn is_too_large(text: &str) -> bool {
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    let (digits, radix) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (hex.to_string(), 16),
        None => (digits, 10),
    };
    !digits.is_empty()
        && digits.chars().all(|c| c.is_digit(radix))
        && usize::from_str_radix(&digits, radix).is_err()
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

/// Parses the arguments after the program name.
pub(crate) fn parse(arguments: &[OsString]) -> Result<Command, Failure> {
    let mut words = Vec::with_capacity(arguments.len());
    for argument in arguments {
        match argument.to_str() {
            Some(word) => words.push(word),
            None => return Err(usage(format!("{argument:?} is not valid text"))),
        }
    }
    if words.iter().any(|&word| word == "--help" || word == "-h") {
        return Ok(Command::Help);
    }
    let mut words = words.into_iter();
    match words.next() {
        Some("inspect") => {}
        Some(other) => return Err(usage(format!("unknown command {other:?}"))),
        None => return Err(usage("no command given")),
    }
    let mut pid = None;
    let mut options = Options {
        pid: 0,
        near: None,
        reach: None,
        size: None,
        json: false,
    };
    while let Some(word) = words.next() {
        let (name, inline) = match word.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (word, None),
        };
        let mut value = |what: &str| -> Result<usize, Failure> {
            let text = match inline {
                Some(text) => text,
                None => words
                    .next()
                    .ok_or_else(|| usage(format!("{name} needs {what}")))?,
            };
            parse_number(text).ok_or_else(|| {
                if is_too_large(text) {
                    usage(format!(
                        "{name}: {text:?} is too large for this {}-bit inspector (at most {:#x})",
                        usize::BITS,
                        usize::MAX
                    ))
                } else {
                    usage(format!("{name}: {text:?} is not a number"))
                }
            })
        };
        match name {
            "--near" => options.near = Some(value("an address")?),
            "--reach" => options.reach = Some(value("a number of bytes")?),
            "--size" => {
                let size = value("a number of bytes")?;
                if size == 0 {
                    return Err(usage("--size must be at least 1"));
                }
                options.size = Some(size);
            }
            "--json" if inline.is_none() => options.json = true,
            option if option.starts_with('-') => {
                return Err(usage(format!("unknown option {word:?}")));
            }
            _ if pid.is_none() => {
                let parsed = word
                    .parse::<u32>()
                    .ok()
                    .filter(|&pid| pid > 0)
                    .ok_or_else(|| {
                        usage(format!("{word:?} is not a process id (a positive integer)"))
                    })?;
                pid = Some(parsed);
            }
            _ => return Err(usage(format!("unexpected argument {word:?}"))),
        }
    }
    options.pid = pid.ok_or_else(|| usage("no process id given"))?;
    Ok(Command::Inspect(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Command, Failure> {
        let arguments: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse(&arguments)
    }

    #[test]
    fn a_full_command_line_parses() {
        let command = parse_words(&[
            "inspect",
            "4242",
            "--near",
            "0x7fff_1000",
            "--reach=65536",
            "--size",
            "100",
            "--json",
        ])
        .unwrap();
        assert_eq!(
            command,
            Command::Inspect(Options {
                pid: 4242,
                near: Some(0x7fff_1000),
                reach: Some(65536),
                size: Some(100),
                json: true,
            })
        );
        assert_eq!(
            parse_words(&["inspect", "1"]).unwrap(),
            Command::Inspect(Options {
                pid: 1,
                near: None,
                reach: None,
                size: None,
                json: false,
            })
        );
        assert_eq!(parse_words(&["inspect", "--help"]).unwrap(), Command::Help);
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for words in [
            &[][..],
            &["show", "1"],
            &["inspect"],
            &["inspect", "0"],
            &["inspect", "-5"],
            &["inspect", "abc"],
            &["inspect", "99999999999"],
            &["inspect", "1", "2"],
            &["inspect", "1", "--near"],
            &["inspect", "1", "--near", "0xzz"],
            &["inspect", "1", "--size", "0"],
            &["inspect", "1", "--frobnicate"],
            &["inspect", "1", "--json=yes"],
        ] {
            let result = parse_words(words);
            assert!(
                matches!(result, Err(Failure::Usage(_))),
                "{words:?}: {result:?}"
            );
        }
    }

    #[test]
    fn numbers_are_decimal_or_hexadecimal() {
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x1000"), Some(4096));
        assert_eq!(parse_number("0X7fff_0000"), Some(0x7fff_0000));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("12a"), None);
        assert_eq!(parse_number("+1"), None);
        assert_eq!(parse_number("0x1_0000_0000_0000_0000"), None);
        assert_eq!(parse_number("0xffff_ffff"), Some(0xffff_ffff));
        assert_eq!(parse_number("4294967295"), Some(0xffff_ffff));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn a_64_bit_inspector_takes_47_bit_addresses() {
        assert_eq!(parse_number("0x7fff_0000_1000"), Some(0x7fff_0000_1000));
        assert_eq!(parse_number("0x1_0000_0000"), Some(0x1_0000_0000));
        assert_eq!(parse_number("0xffff_ffff_ffff_ffff"), Some(usize::MAX));
        assert_eq!(
            parse_words(&["inspect", "1", "--near", "0x7fff_0000_1000"]).unwrap(),
            Command::Inspect(Options {
                pid: 1,
                near: Some(0x7fff_0000_1000),
                reach: None,
                size: None,
                json: false,
            })
        );
    }

    #[cfg(target_pointer_width = "32")]
    #[test]
    fn a_32_bit_inspector_stops_at_4_gib() {
        // One past 0xFFFF_FFFF does not wrap to 0.
        assert_eq!(parse_number("0x1_0000_0000"), None);
        assert_eq!(parse_number("4294967296"), None);
        assert_eq!(parse_number("0x7fff_0000_1000"), None);
        assert_eq!(parse_number("0xffff_ffff"), Some(usize::MAX));
    }

    #[test]
    fn numbers_too_large_for_an_address_say_so() {
        for (text, too_large) in [
            ("0x1_0000_0000_0000_0000", true),
            ("99999999999999999999999", true),
            ("0xzz", false),
            ("0x", false),
            ("-1", false),
        ] {
            let message = match parse_words(&["inspect", "1", "--near", text]) {
                Err(Failure::Usage(message)) => message,
                other => panic!("{text}: {other:?}"),
            };
            let expected = if too_large {
                "is too large"
            } else {
                "is not a number"
            };
            assert!(message.contains(expected), "{text}: {message}");
        }
        assert_eq!(is_too_large("0x1_0000_0000"), usize::BITS == 32);
        assert!(!is_too_large("0xffff_ffff"));
    }
}
