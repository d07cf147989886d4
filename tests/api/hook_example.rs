//! Runs `examples/hook.rs` itself and checks what it prints: the hooked
//! function's results before, hooked, re-pointed and after unhooking.

#![cfg(target_arch = "x86_64")]

#[path = "../../examples/hook.rs"]
mod example;

#[test]
fn the_hook_example_hooks_repoints_and_unhooks() {
    assert_eq!(example::inline_hook::run().unwrap(), [11, 500, -5, 11]);
}
