/*
 * What the C library's size build changes (BENCHMARKS.md, "Size of the C
 * library": `--no-default-features --features no-format,size-opt`). Run by
 * .ci/size against that build; the default build, which has every
 * feature, fails it by design. Linux only (getppid). Exits non-zero if any
 * check fails.
 *
 * - Without `external-processes`, an allocation in another process comes
 *   back as MEMORY_BUFFERS_STATUS_UNSUPPORTED with nothing mapped, while
 *   one in this process still works.
 * - With `no-format`, the last error message is the function's name and
 *   the fixed text of the failure, and memory_buffers_last_error still
 *   gives the numbers.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#include "memory_buffers.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures = 0;

#define CHECK(condition)                                                                   \
    do {                                                                                   \
        if (!(condition)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* The calling thread's last error message is exactly `expected`. */
static void check_message(const char *expected) {
    char message[512];
    size_t length = 0;
    CHECK(memory_buffers_last_error_message(message, sizeof message, &length) == MEMORY_BUFFERS_STATUS_OK);
    if (strcmp(message, expected) != 0) {
        fprintf(stderr, "last error message:\n  %s\nexpected:\n  %s\n", message, expected);
        failures++;
    }
    CHECK(length == strlen(expected) + 1);
}

static void target_function(void) {}

int main(void) {
    /* A function of this program: the allocations below go near it. */
    void (*volatile function)(void) = target_function;
    uintptr_t target = (uintptr_t)function;

    MemoryBuffersAllocatorSettings settings;
    CHECK(memory_buffers_allocator_settings_from_proximity(0x7fff0000, target, 4096, &settings) ==
          MEMORY_BUFFERS_STATUS_OK);

    /* Another process that exists: this one's parent. */
    MemoryBuffersPrivateAllocation *allocation = (MemoryBuffersPrivateAllocation *)(uintptr_t)0x1000;
    settings.target_process_id = (uint32_t)getppid();
    CHECK(memory_buffers_allocate_private_memory(&settings, &allocation) == MEMORY_BUFFERS_STATUS_UNSUPPORTED);
    CHECK(allocation == NULL);
    check_message("memory_buffers_allocate_private_memory: allocation in another process is not built into "
                  "this library (its `external-processes` feature is off)");

    /* This process, by its id and by 0. */
    uint32_t ids[] = {(uint32_t)getpid(), 0};
    for (size_t index = 0; index < sizeof ids / sizeof ids[0]; index++) {
        settings.target_process_id = ids[index];
        CHECK(memory_buffers_allocate_private_memory(&settings, &allocation) == MEMORY_BUFFERS_STATUS_OK);
        CHECK(allocation != NULL);
        uint32_t holder = 0;
        CHECK(memory_buffers_private_allocation_process_id(allocation, &holder) == MEMORY_BUFFERS_STATUS_OK);
        CHECK(holder == (uint32_t)getpid());
        CHECK(memory_buffers_release_private_allocation(&allocation) == MEMORY_BUFFERS_STATUS_OK);
    }

    /* A library error: the fixed text, the numbers in the error info. */
    MemoryBuffersSearchSettings search = {0x30000, 0x20000, 48, 0};
    MemoryBuffersLockedBuffer *buffer = NULL;
    CHECK(memory_buffers_get_buffer(&search, &buffer) == MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);
    check_message("memory_buffers_get_buffer: invalid request: min_address is above max_address");
    MemoryBuffersErrorInfo info;
    CHECK(memory_buffers_last_error(&info) == MEMORY_BUFFERS_STATUS_OK);
    CHECK(info.status == MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);
    CHECK(info.min_address == 0x30000 && info.max_address == 0x20000 && info.size == 48);

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("size build checks passed (%s)\n", memory_buffers_version());
    return 0;
}
