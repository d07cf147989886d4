/*
 * Exercises every function of memory_buffers.h from C, against the shared
 * library built by cargo. Built and run by tests/c_abi.rs; exits non-zero
 * if any check fails. x86 only (64- and 32-bit): it writes and runs machine
 * code, `mov eax, imm32; ret`, which both modes encode alike.
 *
 * SPDX-License-Identifier: MIT OR Apache-2.0
 */

#include "memory_buffers.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The header's structs as both sides lay them out, for this pointer width:
 * addresses and sizes are pointer-sized, then the 32-bit fields. */
#define POINTER sizeof(void *)
_Static_assert(sizeof(uintptr_t) == POINTER && sizeof(size_t) == POINTER, "pointer-sized fields");
_Static_assert(offsetof(MemoryBuffersSearchSettings, min_address) == 0, "search min_address");
_Static_assert(offsetof(MemoryBuffersSearchSettings, max_address) == POINTER, "search max_address");
_Static_assert(offsetof(MemoryBuffersSearchSettings, size) == 2 * POINTER, "search size");
_Static_assert(offsetof(MemoryBuffersSearchSettings, target) == 3 * POINTER, "search target");
_Static_assert(sizeof(MemoryBuffersSearchSettings) == 4 * POINTER, "search settings size");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, min_address) == 0, "allocator min_address");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, max_address) == POINTER, "allocator max_address");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, size) == 2 * POINTER, "allocator size");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, retry_count) == 3 * POINTER, "allocator retry_count");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, target_process_id) == 3 * POINTER + 4,
               "allocator target_process_id");
_Static_assert(offsetof(MemoryBuffersAllocatorSettings, target) == 3 * POINTER + 8, "allocator target");
_Static_assert(sizeof(MemoryBuffersAllocatorSettings) == 4 * POINTER + 8, "allocator settings size");
_Static_assert(sizeof(MemoryBuffersStatus) == 4, "status is 32 bits");

static int failures = 0;

static void print_last_error(void) {
    char message[512];
    size_t length = 0;
    MemoryBuffersStatus status = memory_buffers_last_error_message(message, sizeof message, &length);
    if (status == MEMORY_BUFFERS_STATUS_OK || status == MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL) {
        fprintf(stderr, "    last error: %s\n", message);
    }
}

/* Records a failed condition and goes on. */
#define CHECK(condition)                                                                   \
    do {                                                                                   \
        if (!(condition)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

/* Checks that a call returns the expected status. */
#define EXPECT(call, expected)                                                                        \
    do {                                                                                              \
        MemoryBuffersStatus status_ = (call);                                                         \
        if (status_ != (expected)) {                                                                  \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s\n", __FILE__, __LINE__, #call,   \
                    (int)status_, memory_buffers_status_message(status_), #expected);                 \
            print_last_error();                                                                       \
            failures++;                                                                               \
        }                                                                                             \
    } while (0)

/* Checks that a call succeeds; stops the program if it does not, because
 * what follows depends on its results. */
#define REQUIRE_OK(call)                                                                  \
    do {                                                                                  \
        MemoryBuffersStatus status_ = (call);                                             \
        if (status_ != MEMORY_BUFFERS_STATUS_OK) {                                        \
            fprintf(stderr, "%s:%d: %s returned %d (%s)\n", __FILE__, __LINE__, #call,    \
                    (int)status_, memory_buffers_status_message(status_));                \
            print_last_error();                                                           \
            exit(2);                                                                      \
        }                                                                                 \
    } while (0)

#define OK(call) EXPECT(call, MEMORY_BUFFERS_STATUS_OK)

typedef int (*ReturnsInt)(void);

static int run_code(uintptr_t address) {
    ReturnsInt function = (ReturnsInt)address;
    return function();
}

/* mov eax, imm32; ret */
static void return_constant(uint8_t code[6], int32_t value) {
    code[0] = 0xb8;
    memcpy(&code[1], &value, 4);
    code[5] = 0xc3;
}

/* A target to place buffers near. */
static int hooked_function(void) { return 1; }

static uintptr_t target_address(void) { return (uintptr_t)&hooked_function; }

/* Context of the overwrite callback. */
typedef struct {
    int calls;
    uintptr_t last_target;
} CallbackContext;

static void copy_with_context(void *context, const uint8_t *source, uint8_t *target, size_t size) {
    CallbackContext *state = context;
    state->calls++;
    state->last_target = (uintptr_t)target;
    memcpy(target, source, size);
}

static void test_status_messages(void) {
    const char *unknown = memory_buffers_status_message(1000);
    CHECK(unknown != NULL);
    for (MemoryBuffersStatus status = MEMORY_BUFFERS_STATUS_OK; status <= MEMORY_BUFFERS_STATUS_PROCESS_NOT_INJECTABLE;
         status++) {
        const char *message = memory_buffers_status_message(status);
        CHECK(message != NULL && message[0] != '\0');
        CHECK(message != NULL && strcmp(message, unknown) != 0);
    }
    CHECK(strcmp(memory_buffers_status_message(MEMORY_BUFFERS_STATUS_OK), "success") == 0);
    CHECK(strcmp(memory_buffers_status_message(-7), unknown) == 0);
}

/* The header's version macros (written from Cargo's version) and the loaded
 * library's version functions agree: this program and the library come from
 * the same release. */
static void test_version(void) {
    const char *version = memory_buffers_version();
    CHECK(version != NULL && strcmp(version, MEMORY_BUFFERS_VERSION) == 0);
    CHECK(memory_buffers_version_number() == MEMORY_BUFFERS_VERSION_NUMBER);
    CHECK(MEMORY_BUFFERS_VERSION_NUMBER ==
          MEMORY_BUFFERS_VERSION_MAJOR * 1000000 + MEMORY_BUFFERS_VERSION_MINOR * 1000 + MEMORY_BUFFERS_VERSION_PATCH);
    char spelled[64];
    snprintf(spelled, sizeof spelled, "%d.%d.%d", MEMORY_BUFFERS_VERSION_MAJOR, MEMORY_BUFFERS_VERSION_MINOR,
             MEMORY_BUFFERS_VERSION_PATCH);
    CHECK(strncmp(MEMORY_BUFFERS_VERSION, spelled, strlen(spelled)) == 0);
}

static void test_settings(size_t granularity, uintptr_t highest) {
    CHECK(granularity >= 4096 && (granularity & (granularity - 1)) == 0);
#if UINTPTR_MAX > 0xffffffffu
    CHECK(highest > UINT32_MAX);
#else
    /* A 32-bit process: at least 2 GiB less 64 KiB, and the top of the
     * last page below 4 GiB at most (the +1 below does not wrap). */
    CHECK(highest >= 0x7ffeffffu && highest < UINTPTR_MAX && (highest + 1) % 4096 == 0);
#endif

    MemoryBuffersSearchSettings search;
    OK(memory_buffers_search_settings_default(&search));
    CHECK(search.min_address == 0 && search.max_address == highest && search.size == 4096);
    OK(memory_buffers_search_settings_from_proximity(0x1000, 0x100000, 64, &search));
    CHECK(search.min_address == 0xff000 && search.max_address == 0x101000 && search.size == 64);
    OK(memory_buffers_search_settings_from_proximity(0x1000, 0x10, 64, &search));
    CHECK(search.min_address == 0 && search.max_address == 0x1010);

    MemoryBuffersAllocatorSettings allocator;
    OK(memory_buffers_allocator_settings_default(&allocator));
    CHECK(allocator.min_address == 0 && allocator.max_address == highest && allocator.size == 4096);
    CHECK(allocator.retry_count == MEMORY_BUFFERS_DEFAULT_RETRY_COUNT);
    OK(memory_buffers_allocator_settings_from_proximity(0x2000, 0x100000, 100, &allocator));
    CHECK(allocator.min_address == 0xfe000 && allocator.max_address == 0x102000 && allocator.size == 100);
    CHECK(allocator.retry_count == MEMORY_BUFFERS_DEFAULT_RETRY_COUNT);

    EXPECT(memory_buffers_search_settings_default(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_search_settings_from_proximity(1, 1, 1, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_allocator_settings_default(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_allocator_settings_from_proximity(1, 1, 1, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_allocation_granularity(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_highest_user_address(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
}

static void test_locator(void) {
    MemoryBuffersLocatorKind kind = {.shared = false, .private_reason = -1, .os_error = -1};
    OK(memory_buffers_locator_kind(&kind));
    CHECK(kind.shared);
    CHECK(kind.private_reason == MEMORY_BUFFERS_PRIVATE_LOCATOR_REASON_NONE);
    CHECK(kind.os_error == 0);
    uintptr_t first = 0, second = 0;
    OK(memory_buffers_locator_address(&first));
    OK(memory_buffers_locator_address(&second));
    CHECK(first != 0 && first % 4096 == 0 && first == second);
    EXPECT(memory_buffers_locator_kind(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_locator_address(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
}

/* Every way a request can be invalid, through both request functions. */
static void test_invalid_requests(uintptr_t highest, size_t granularity) {
    MemoryBuffersLockedBuffer *buffer = (MemoryBuffersLockedBuffer *)(uintptr_t)0x1234;
    MemoryBuffersPrivateAllocation *allocation = (MemoryBuffersPrivateAllocation *)(uintptr_t)0x1234;
    struct {
        uintptr_t min, max;
        size_t size;
        MemoryBuffersStatus expected;
    } cases[] = {
        {0x10000, 0x7fffffff, 0, MEMORY_BUFFERS_STATUS_ZERO_SIZE},
        {0x20000, 0x10000, 16, MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX},
        {0x10000, 0x10fff, 0x2000, MEMORY_BUFFERS_STATUS_RANGE_SMALLER_THAN_SIZE},
        {highest + 1, UINTPTR_MAX, 16, MEMORY_BUFFERS_STATUS_RANGE_ABOVE_USER_SPACE},
        {0, UINTPTR_MAX, SIZE_MAX, MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        MemoryBuffersSearchSettings search = {cases[i].min, cases[i].max, cases[i].size, 0};
        EXPECT(memory_buffers_get_buffer(&search, &buffer), cases[i].expected);
        CHECK(buffer == NULL);
        buffer = (MemoryBuffersLockedBuffer *)(uintptr_t)0x1234;
        EXPECT(memory_buffers_get_buffer_aligned(&search, 16, &buffer), cases[i].expected);
        CHECK(buffer == NULL);
        MemoryBuffersAllocatorSettings allocator = {cases[i].min, cases[i].max, cases[i].size,
                                                    MEMORY_BUFFERS_DEFAULT_RETRY_COUNT, 0, 0};
        EXPECT(memory_buffers_allocate_private_memory(&allocator, &allocation), cases[i].expected);
        CHECK(allocation == NULL);
        allocation = (MemoryBuffersPrivateAllocation *)(uintptr_t)0x1234;
    }
    /* The 32-bit size field of shared buffers. */
#if SIZE_MAX > 0xffffffffu
    MemoryBuffersSearchSettings too_big = {0, highest, (size_t)1 << 33, 0};
#else
    /* A 32-bit size_t holds no size above the field; its largest value
     * cannot even be rounded up to a page. */
    MemoryBuffersSearchSettings too_big = {0, highest, SIZE_MAX, 0};
#endif
    EXPECT(memory_buffers_get_buffer(&too_big, &buffer), MEMORY_BUFFERS_STATUS_SIZE_TOO_LARGE);

    /* Bad alignments. */
    MemoryBuffersSearchSettings valid;
    OK(memory_buffers_search_settings_from_proximity(0x7fff0000, target_address(), 64, &valid));
    size_t bad_alignments[] = {0, 3, 24};
    for (size_t i = 0; i < sizeof bad_alignments / sizeof bad_alignments[0]; i++) {
        buffer = (MemoryBuffersLockedBuffer *)(uintptr_t)0x1234;
        EXPECT(memory_buffers_get_buffer_aligned(&valid, bad_alignments[i], &buffer),
               MEMORY_BUFFERS_STATUS_ALIGNMENT_NOT_POWER_OF_TWO);
        CHECK(buffer == NULL);
    }
    EXPECT(memory_buffers_get_buffer_aligned(&valid, granularity * 2, &buffer),
           MEMORY_BUFFERS_STATUS_ALIGNMENT_ABOVE_GRANULARITY);

    /* NULL arguments. */
    EXPECT(memory_buffers_get_buffer(NULL, &buffer), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_get_buffer(&valid, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_get_buffer_aligned(NULL, 8, &buffer), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_get_buffer_aligned(&valid, 8, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    MemoryBuffersAllocatorSettings allocator;
    OK(memory_buffers_allocator_settings_default(&allocator));
    EXPECT(memory_buffers_allocate_private_memory(NULL, &allocation), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    CHECK(allocation == NULL);
    EXPECT(memory_buffers_allocate_private_memory(&allocator, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
}

/* The last error of this thread: details, message, and the size query. */
static void test_last_error(void) {
    MemoryBuffersSearchSettings settings = {0x30000, 0x20000, 48, 0};
    MemoryBuffersLockedBuffer *buffer = NULL;
    EXPECT(memory_buffers_get_buffer(&settings, &buffer), MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);

    MemoryBuffersErrorInfo info;
    OK(memory_buffers_last_error(&info));
    CHECK(info.status == MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);
    CHECK(info.min_address == 0x30000 && info.max_address == 0x20000 && info.size == 48);
    CHECK(info.os_error == 0);
    EXPECT(memory_buffers_last_error(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    size_t length = 0;
    EXPECT(memory_buffers_last_error_message(NULL, 0, &length), MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL);
    CHECK(length > 1);
    char *message = malloc(length);
    CHECK(message != NULL);
    if (message != NULL) {
        size_t again = 0;
        OK(memory_buffers_last_error_message(message, length, &again));
        CHECK(again == length && strlen(message) + 1 == length);
        CHECK(strstr(message, "memory_buffers_get_buffer") != NULL);
        CHECK(strstr(message, "min_address is above max_address") != NULL);
        CHECK(strstr(message, "0x30000") != NULL);
        char short_copy[10];
        EXPECT(memory_buffers_last_error_message(short_copy, sizeof short_copy, NULL),
               MEMORY_BUFFERS_STATUS_BUFFER_TOO_SMALL);
        CHECK(strlen(short_copy) == sizeof short_copy - 1 && strncmp(short_copy, message, 9) == 0);
        free(message);
    }
    EXPECT(memory_buffers_last_error_message(NULL, 4, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    /* Its own failures do not replace the last error. */
    OK(memory_buffers_last_error(&info));
    CHECK(info.status == MEMORY_BUFFERS_STATUS_MIN_ABOVE_MAX);
}

/* Appends and runs code, overwrites it both ways, and checks every
 * accessor and append error. Returns the buffer's base address and leaves
 * the buffer released. */
static uintptr_t test_buffer(size_t granularity) {
    MemoryBuffersSearchSettings settings;
    REQUIRE_OK(memory_buffers_search_settings_from_proximity(0x7fff0000, target_address(), 64, &settings));
    MemoryBuffersLockedBuffer *buffer = NULL;
    REQUIRE_OK(memory_buffers_get_buffer(&settings, &buffer));
    CHECK(buffer != NULL);

    uintptr_t base = 0, next = 0;
    size_t size = 0, position = 0, left = 0;
    OK(memory_buffers_buffer_base_address(buffer, &base));
    OK(memory_buffers_buffer_size(buffer, &size));
    OK(memory_buffers_buffer_position(buffer, &position));
    OK(memory_buffers_buffer_bytes_left(buffer, &left));
    OK(memory_buffers_buffer_next_address(buffer, &next));
    CHECK(base != 0 && size >= 64 && position + left == size && left >= 64);
    CHECK(next == base + position);
    CHECK(next >= settings.min_address && next + 64 - 1 <= settings.max_address);

    /* Append code and run it. */
    uint8_t code[6];
    return_constant(code, 42);
    uintptr_t code_address = 0;
    REQUIRE_OK(memory_buffers_buffer_append_code(buffer, code, sizeof code, &code_address));
    CHECK(code_address == next);
    CHECK(run_code(code_address) == 42);
    size_t after_code = 0;
    OK(memory_buffers_buffer_position(buffer, &after_code));
    CHECK(after_code == position + sizeof code);

    /* Append data; the address output is optional. */
    const uint8_t data[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03};
    uintptr_t data_address = 0;
    OK(memory_buffers_buffer_append_bytes(buffer, data, sizeof data, &data_address));
    CHECK(data_address == code_address + sizeof code);
    CHECK(memcmp((const void *)data_address, data, sizeof data) == 0);
    OK(memory_buffers_buffer_append_bytes(buffer, data, 1, NULL));
    OK(memory_buffers_buffer_append_bytes(buffer, NULL, 0, NULL));
    OK(memory_buffers_buffer_append_code(buffer, NULL, 0, NULL));
    OK(memory_buffers_buffer_position(buffer, &position));
    CHECK(position == after_code + sizeof data + 1);

    /* Overwrite plainly: the code returns the new value. */
    uint8_t replacement[6];
    return_constant(replacement, 7);
    OK(memory_buffers_overwrite_allocated_code(replacement, (uint8_t *)code_address, sizeof replacement));
    CHECK(run_code(code_address) == 7);

    /* Overwrite through the callback, which gets the context. */
    CallbackContext context = {0, 0};
    return_constant(replacement, 99);
    OK(memory_buffers_overwrite_allocated_code_ex(replacement, (uint8_t *)code_address, sizeof replacement,
                                                  copy_with_context, &context));
    CHECK(context.calls == 1 && context.last_target == code_address);
    CHECK(run_code(code_address) == 99);
    OK(memory_buffers_flush_instruction_cache(code_address, sizeof replacement));

    /* Overwrites outside the written part of a buffer are refused, and the
     * callback is not called. */
    uint8_t on_stack[6] = {0};
    EXPECT(memory_buffers_overwrite_allocated_code(replacement, on_stack, sizeof on_stack),
           MEMORY_BUFFERS_STATUS_OUTSIDE_BUFFERS);
    CHECK(on_stack[0] == 0);
    EXPECT(memory_buffers_overwrite_allocated_code_ex(replacement, (uint8_t *)(base + position), 6,
                                                      copy_with_context, &context),
           MEMORY_BUFFERS_STATUS_OUTSIDE_BUFFERS);
    CHECK(context.calls == 1);
    EXPECT(memory_buffers_overwrite_allocated_code(NULL, (uint8_t *)code_address, 6),
           MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_overwrite_allocated_code(replacement, NULL, 6), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_overwrite_allocated_code(replacement, (uint8_t *)code_address, 0),
           MEMORY_BUFFERS_STATUS_ZERO_SIZE);
    EXPECT(memory_buffers_overwrite_allocated_code_ex(replacement, (uint8_t *)code_address, 6, NULL, &context),
           MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_overwrite_allocated_code_ex(NULL, (uint8_t *)code_address, 6, copy_with_context,
                                                      &context),
           MEMORY_BUFFERS_STATUS_NULL_POINTER);
    CHECK(context.calls == 1);
    CHECK(run_code(code_address) == 99);

    /* An append larger than the space left writes nothing. */
    OK(memory_buffers_buffer_bytes_left(buffer, &left));
    uint8_t *too_much = calloc(left + 1, 1);
    CHECK(too_much != NULL);
    EXPECT(memory_buffers_buffer_append_bytes(buffer, too_much, left + 1, NULL), MEMORY_BUFFERS_STATUS_DOES_NOT_FIT);
    MemoryBuffersErrorInfo info;
    OK(memory_buffers_last_error(&info));
    CHECK(info.status == MEMORY_BUFFERS_STATUS_DOES_NOT_FIT && info.size == left + 1);
    CHECK(info.min_address == base + position && info.max_address == base + size - 1);
    free(too_much);
    size_t unchanged = 0;
    OK(memory_buffers_buffer_position(buffer, &unchanged));
    CHECK(unchanged == position);
    EXPECT(memory_buffers_buffer_append_bytes(buffer, NULL, 5, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_append_code(buffer, NULL, 5, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    /* NULL outputs and handles that are not live. */
    MemoryBuffersLockedBuffer *bogus = (MemoryBuffersLockedBuffer *)(uintptr_t)0x1000;
    EXPECT(memory_buffers_buffer_base_address(buffer, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_size(buffer, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_position(buffer, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_bytes_left(buffer, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_next_address(buffer, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_base_address(NULL, &base), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_buffer_size(bogus, &size), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_buffer_append_bytes(bogus, data, 1, NULL), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_release_buffer(&bogus), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    CHECK(bogus == (MemoryBuffersLockedBuffer *)(uintptr_t)0x1000);
    EXPECT(memory_buffers_release_buffer(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    /* While held, the buffer is not handed out again: a request that only
     * this buffer's pages can satisfy finds no space. */
    MemoryBuffersSearchSettings only_this = {base, base + size - 1, 16, 0};
    MemoryBuffersLockedBuffer *other = NULL;
    EXPECT(memory_buffers_get_buffer(&only_this, &other), MEMORY_BUFFERS_STATUS_NO_SPACE_IN_RANGE);
    CHECK(other == NULL);

    /* Release; the handle is set to NULL, and neither a second release nor
     * a stale copy is accepted. */
    MemoryBuffersLockedBuffer *stale = buffer;
    OK(memory_buffers_release_buffer(&buffer));
    CHECK(buffer == NULL);
    EXPECT(memory_buffers_release_buffer(&buffer), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_buffer_position(stale, &position), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_buffer_append_code(stale, code, sizeof code, NULL), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_release_buffer(&stale), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);

    /* The next holder continues after the bytes written; they still run. */
    REQUIRE_OK(memory_buffers_get_buffer(&only_this, &other));
    uintptr_t again = 0;
    OK(memory_buffers_buffer_base_address(other, &again));
    CHECK(again == base);
    OK(memory_buffers_buffer_position(other, &unchanged));
    CHECK(unchanged == position);
    return_constant(code, 5);
    uintptr_t second_code = 0;
    OK(memory_buffers_buffer_append_code(other, code, sizeof code, &second_code));
    CHECK(second_code == base + position);
    CHECK(run_code(second_code) == 5 && run_code(code_address) == 99);
    OK(memory_buffers_release_buffer(&other));

    /* Appends stop at the range the buffer was asked for, even where the
       buffer itself goes on: 16 bytes inside a 32-byte window. */
    uintptr_t window = 0;
    MemoryBuffersLockedBuffer *narrow = NULL;
    {
        MemoryBuffersLockedBuffer *probe = NULL;
        REQUIRE_OK(memory_buffers_get_buffer(&settings, &probe));
        REQUIRE_OK(memory_buffers_buffer_next_address(probe, &window));
        OK(memory_buffers_release_buffer(&probe));
    }
    MemoryBuffersSearchSettings narrow_settings = {window, window + 31, 16, 0};
    REQUIRE_OK(memory_buffers_get_buffer(&narrow_settings, &narrow));
    uintptr_t narrow_next = 0;
    OK(memory_buffers_buffer_next_address(narrow, &narrow_next));
    CHECK(narrow_next >= window && narrow_next + 16 - 1 <= window + 31);
    const uint8_t filler[40] = {0};
    size_t fits = (size_t)(window + 31 - narrow_next + 1);
    EXPECT(memory_buffers_buffer_append_bytes(narrow, filler, fits + 1, NULL),
           MEMORY_BUFFERS_STATUS_OUTSIDE_REQUESTED_RANGE);
    uintptr_t narrow_after = 0;
    OK(memory_buffers_buffer_next_address(narrow, &narrow_after));
    CHECK(narrow_after == narrow_next);
    OK(memory_buffers_buffer_append_bytes(narrow, filler, fits, NULL));
    OK(memory_buffers_release_buffer(&narrow));

    /* Aligned: the next write position is a multiple of the alignment. */
    size_t alignments[] = {1, 16, 256, granularity};
    for (size_t i = 0; i < sizeof alignments / sizeof alignments[0]; i++) {
        MemoryBuffersLockedBuffer *aligned = NULL;
        REQUIRE_OK(memory_buffers_get_buffer_aligned(&settings, alignments[i], &aligned));
        OK(memory_buffers_buffer_next_address(aligned, &next));
        CHECK(next % alignments[i] == 0);
        OK(memory_buffers_buffer_append_bytes(aligned, data, 3, NULL));
        OK(memory_buffers_release_buffer(&aligned));
        CHECK(aligned == NULL);
    }
    return base;
}

static void test_private_allocation(size_t granularity) {
    MemoryBuffersAllocatorSettings settings;
    REQUIRE_OK(
        memory_buffers_allocator_settings_from_proximity(0x7fff0000, target_address(), 2 * granularity + 1, &settings));
    MemoryBuffersPrivateAllocation *allocation = NULL;
    REQUIRE_OK(memory_buffers_allocate_private_memory(&settings, &allocation));
    uintptr_t base = 0;
    size_t size = 0;
    OK(memory_buffers_private_allocation_base_address(allocation, &base));
    OK(memory_buffers_private_allocation_size(allocation, &size));
    CHECK(size == 3 * granularity);
    CHECK(base % granularity == 0 && base >= settings.min_address && base + size - 1 <= settings.max_address);
    /* The pages are writable and executable. */
    return_constant((uint8_t *)base, 1234);
    CHECK(run_code(base) == 1234);
    memset((void *)(base + size - 8), 0xab, 8);
    /* This process's pages through the byte functions too (another
     * process's are tested in tests/target_process.rs). */
    CHECK(settings.target_process_id == 0);
    uint32_t owner = 0;
    OK(memory_buffers_private_allocation_process_id(allocation, &owner));
    CHECK(owner != 0);
    const uint8_t pattern[4] = {1, 2, 3, 4};
    uint8_t copied[4] = {0};
    OK(memory_buffers_private_allocation_write(allocation, size - 12, pattern, sizeof pattern));
    OK(memory_buffers_private_allocation_read(allocation, size - 12, copied, sizeof copied));
    CHECK(memcmp(copied, pattern, sizeof pattern) == 0 && memcmp((const void *)(base + size - 12), pattern, 4) == 0);
    EXPECT(memory_buffers_private_allocation_write(allocation, size - 2, pattern, sizeof pattern),
           MEMORY_BUFFERS_STATUS_DOES_NOT_FIT);
    EXPECT(memory_buffers_private_allocation_read(allocation, 0, NULL, 1), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_private_allocation_process_id(allocation, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    EXPECT(memory_buffers_private_allocation_base_address(allocation, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_private_allocation_size(allocation, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_private_allocation_size(NULL, &size), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    MemoryBuffersPrivateAllocation *bogus = (MemoryBuffersPrivateAllocation *)(uintptr_t)0x2000;
    EXPECT(memory_buffers_private_allocation_base_address(bogus, &base), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_release_private_allocation(&bogus), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_private_allocation_leak(&bogus, NULL), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_release_private_allocation(NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_private_allocation_leak(NULL, NULL), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    /* A buffer handle is not an allocation handle. */
    MemoryBuffersSearchSettings search;
    OK(memory_buffers_search_settings_default(&search));
    MemoryBuffersLockedBuffer *buffer = NULL;
    REQUIRE_OK(memory_buffers_get_buffer(&search, &buffer));
    EXPECT(memory_buffers_private_allocation_size((MemoryBuffersPrivateAllocation *)buffer, &size),
           MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_buffer_size((MemoryBuffersLockedBuffer *)allocation, &size),
           MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    OK(memory_buffers_release_buffer(&buffer));

    MemoryBuffersPrivateAllocation *stale = allocation;
    OK(memory_buffers_release_private_allocation(&allocation));
    CHECK(allocation == NULL);
    EXPECT(memory_buffers_release_private_allocation(&allocation), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_private_allocation_size(stale, &size), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);
    EXPECT(memory_buffers_release_private_allocation(&stale), MEMORY_BUFFERS_STATUS_INVALID_HANDLE);

    /* A leaked allocation stays mapped without a handle. */
    REQUIRE_OK(memory_buffers_allocate_private_memory(&settings, &allocation));
    uintptr_t expected = 0, leaked = 0;
    OK(memory_buffers_private_allocation_base_address(allocation, &expected));
    OK(memory_buffers_private_allocation_leak(&allocation, &leaked));
    CHECK(allocation == NULL && leaked == expected && leaked != 0);
    return_constant((uint8_t *)leaked, 77);
    CHECK(run_code(leaked) == 77);
    EXPECT(memory_buffers_private_allocation_leak(&allocation, &leaked), MEMORY_BUFFERS_STATUS_NULL_POINTER);

    /* Patching code outside the buffers. */
    uint8_t patch[6];
    return_constant(patch, 88);
    OK(memory_buffers_patch_code(patch, (uint8_t *)leaked, sizeof patch));
    CHECK(run_code(leaked) == 88);
    EXPECT(memory_buffers_patch_code(NULL, (uint8_t *)leaked, sizeof patch), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_patch_code(patch, NULL, sizeof patch), MEMORY_BUFFERS_STATUS_NULL_POINTER);
    EXPECT(memory_buffers_patch_code(patch, (uint8_t *)leaked, 0), MEMORY_BUFFERS_STATUS_ZERO_SIZE);
    CHECK(run_code(leaked) == 88);
}

int main(void) {
    size_t granularity = 0;
    uintptr_t highest = 0;
    REQUIRE_OK(memory_buffers_allocation_granularity(&granularity));
    REQUIRE_OK(memory_buffers_highest_user_address(&highest));

    test_version();
    test_status_messages();
    test_settings(granularity, highest);
    test_locator();
    test_invalid_requests(highest, granularity);
    test_last_error();
    uintptr_t base = test_buffer(granularity);
    test_private_allocation(granularity);

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed (library %s, buffer at %#lx)\n", memory_buffers_version(), (unsigned long)base);
    return 0;
}
