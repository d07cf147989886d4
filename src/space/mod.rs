//! Free space near an address: what is mapped, where a new block may go,
//! and the loop that claims it.
//!
//! One question runs through the library, "where near this target can pages
//! be mapped that lie in `[min, max]`?", and it has parts that change for
//! different reasons, so each is a file:
//!
//! - `address`: checked arithmetic and request validation, pure.
//! - `range_set` and `placement`: the set of mapped ranges and the order in
//!   which candidate blocks are tried around it, pure (tested against a
//!   brute-force enumeration).
//! - one file per source of the address map, each a pure parser the OS
//!   layer feeds: `maps` (`/proc/self/maps`, Linux and Android; its
//!   `MapsEntry` is what every source produces), `kinfo_vmmap` (FreeBSD's
//!   `KERN_PROC_VMMAP` records), `region_walk` (macOS's `mach_vm_region`).
//! - `address_space`: the cached view of a process's map and the loop that
//!   claims the nearest block through the OS layer, for this process and
//!   for another one.

pub(crate) mod address;
pub(crate) mod address_space;
// FreeBSD's mapping records; pure, tested everywhere, read on FreeBSD.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub(crate) mod kinfo_vmmap;
// The maps-file parser is pure and tested everywhere; only Linux (and
// Android) reads one.
#[cfg_attr(not(linux_like), allow(dead_code))]
pub(crate) mod maps;
pub(crate) mod placement;
pub(crate) mod range_set;
// The region walk of macOS; pure, tested everywhere, used on macOS.
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
pub(crate) mod region_walk;
