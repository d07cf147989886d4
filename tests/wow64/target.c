/*
 * A 32-bit Windows program for the WoW64 scenarios of
 * tests/target_process.rs: the 64-bit test allocates memory in it, and it
 * reports what it sees of that memory from the inside.
 *
 * Built twice with i686-w64-mingw32-gcc, with `-Wl,--large-address-aware`
 * and without (see .ci/windows): the test runs under Wine as a Windows
 * program and cannot run the compiler itself, so it gets the two programs'
 * paths in MEMORY_BUFFERS_WOW64_TARGET_LAA and
 * MEMORY_BUFFERS_WOW64_TARGET_NO_LAA.
 *
 * It first prints `ready <address of main, hex> <process id> <highest
 * address it may map, hex>`, then answers one line per command read from
 * standard input until its end:
 *
 *   mapped <address>       yes | no (anything reserved there)
 *   read <address> <len>   the bytes in hex, or `unreadable`
 *   rights <address>       rw- | r-x | rwx | other | unmapped
 *   call <address>         calls the code there as `int (*)(void)`, prints
 *                          the result in decimal, or `not executable`
 *
 * Addresses are hexadecimal without `0x`. Every address is checked with
 * VirtualQuery before it is touched, so a wrong one is an answer, never a
 * crash.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

/* The region that holds `address`; State is MEM_FREE if nothing does. */
static MEMORY_BASIC_INFORMATION region_of(uintptr_t address) {
    MEMORY_BASIC_INFORMATION region;
    memset(&region, 0, sizeof region);
    if (VirtualQuery((const void *)address, &region, sizeof region) == 0) {
        region.State = MEM_FREE;
    }
    return region;
}

static int is_readable(DWORD protection) {
    switch (protection & 0xff) {
    case PAGE_READONLY:
    case PAGE_READWRITE:
    case PAGE_EXECUTE_READ:
    case PAGE_EXECUTE_READWRITE:
        return 1;
    default:
        return 0;
    }
}

/* Whether all of [address, address + len) is committed and readable. */
static int range_is_readable(uintptr_t address, size_t len) {
    uintptr_t end = address + len;
    if (end < address) {
        return 0;
    }
    while (address < end) {
        MEMORY_BASIC_INFORMATION region = region_of(address);
        if (region.State != MEM_COMMIT || !is_readable(region.Protect)) {
            return 0;
        }
        uintptr_t next = (uintptr_t)region.BaseAddress + region.RegionSize;
        if (next <= address) {
            return 0;
        }
        address = next;
    }
    return 1;
}

static const char *rights_of(uintptr_t address) {
    MEMORY_BASIC_INFORMATION region = region_of(address);
    if (region.State != MEM_COMMIT) {
        return "unmapped";
    }
    switch (region.Protect) {
    case PAGE_READWRITE:
        return "rw-";
    case PAGE_EXECUTE_READ:
        return "r-x";
    case PAGE_EXECUTE_READWRITE:
        return "rwx";
    default:
        return "other";
    }
}

static void read_bytes(uintptr_t address, size_t len) {
    if (!range_is_readable(address, len)) {
        puts("unreadable");
        return;
    }
    const unsigned char *bytes = (const unsigned char *)address;
    for (size_t i = 0; i < len; i++) {
        printf("%02x", bytes[i]);
    }
    putchar('\n');
}

static void call_code(uintptr_t address) {
    MEMORY_BASIC_INFORMATION region = region_of(address);
    if (region.State != MEM_COMMIT ||
        (region.Protect != PAGE_EXECUTE_READ && region.Protect != PAGE_EXECUTE_READWRITE)) {
        puts("not executable");
        return;
    }
    int (*code)(void) = (int (*)(void))address;
    printf("%d\n", code());
}

int main(void) {
    SYSTEM_INFO system;
    GetSystemInfo(&system);
    /* A pipe is fully buffered otherwise: the test waits for each line. */
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("ready %lx %lu %lx\n", (unsigned long)(uintptr_t)&main,
           (unsigned long)GetCurrentProcessId(),
           (unsigned long)(uintptr_t)system.lpMaximumApplicationAddress);

    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        char command[16] = "";
        unsigned long address = 0;
        unsigned long len = 0;
        int words = sscanf(line, "%15s %lx %lu", command, &address, &len);
        if (words >= 2 && strcmp(command, "mapped") == 0) {
            puts(region_of(address).State != MEM_FREE ? "yes" : "no");
        } else if (words == 3 && strcmp(command, "read") == 0 && len <= 4096) {
            read_bytes(address, len);
        } else if (words >= 2 && strcmp(command, "rights") == 0) {
            puts(rights_of(address));
        } else if (words >= 2 && strcmp(command, "call") == 0) {
            call_code(address);
        } else {
            puts("unknown command");
        }
    }
    return 0;
}
