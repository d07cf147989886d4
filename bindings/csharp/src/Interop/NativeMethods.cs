// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The C interface of memory-buffers (include/memory_buffers.h), declared
// for P/Invoke. Only what the public classes need; every declaration
// mirrors the header's signature exactly.

#if MONO_MCS
// Mono's mcs (C# 7.2) has no `nuint` keyword; C# 9 and later compile
// `nuint` to this very type, so the public signatures are the same.
using nuint = System.UIntPtr;
#endif

using System;
using System.Runtime.InteropServices;

namespace Reloaded.Memory.Buffers.Interop
{
    /// <summary><c>MemoryBuffersSearchSettings</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeSearchSettings
    {
        public UIntPtr MinAddress;
        public UIntPtr MaxAddress;
        public UIntPtr Size;
        public UIntPtr Target;
    }

    /// <summary><c>MemoryBuffersAllocatorSettings</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeAllocatorSettings
    {
        public UIntPtr MinAddress;
        public UIntPtr MaxAddress;
        public UIntPtr Size;
        public uint RetryCount;
        public uint TargetProcessId;
        public UIntPtr Target;
    }

    /// <summary><c>MemoryBuffersErrorInfo</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct NativeErrorInfo
    {
        public int Status;
        public int OsError;
        public UIntPtr MinAddress;
        public UIntPtr MaxAddress;
        public UIntPtr Size;
    }

    /// <summary><c>MemoryBuffersWriteCallback</c>.</summary>
    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void NativeWriteCallback(IntPtr context, IntPtr source, IntPtr target, UIntPtr size);

    internal static unsafe class NativeMethods
    {
        // One name for every system: Mono and .NET look for
        // `libmemory_buffers.so` on Linux, `libmemory_buffers.dylib` on macOS
        // and `memory_buffers.dll` on Windows, which is what cargo-c installs.
        // A plain `cargo build` names the file after the crate
        // (`libmemory_buffers_c.so`), so it is copied or linked under this
        // name next to the assembly (see the README).
        internal const string Library = "memory_buffers";

        // Rust's `extern "C"`: cdecl, which only 32-bit Windows tells apart.
        private const CallingConvention Convention = CallingConvention.Cdecl;

        // --- Shared buffers -------------------------------------------------

        // The handle comes back as a SafeHandle created by the marshaller
        // before the call, so no exception can arrive between the native call
        // and the handle having an owner that releases it.
        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_get_buffer(
            ref NativeSearchSettings settings, out LockedBufferHandle buffer);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_get_buffer_aligned(
            ref NativeSearchSettings settings, UIntPtr alignment, out LockedBufferHandle buffer);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_base_address(LockedBufferHandle buffer, out UIntPtr baseAddress);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_size(LockedBufferHandle buffer, out UIntPtr size);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_position(LockedBufferHandle buffer, out UIntPtr position);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_bytes_left(LockedBufferHandle buffer, out UIntPtr bytesLeft);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_append_bytes(
            LockedBufferHandle buffer, byte* bytes, UIntPtr length, out UIntPtr address);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_buffer_append_code(
            LockedBufferHandle buffer, byte* code, UIntPtr length, out UIntPtr address);

        // Takes the raw value: it is called from SafeHandle.ReleaseHandle,
        // when the SafeHandle itself can no longer be marshalled.
        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_release_buffer(ref IntPtr buffer);

        // --- Code -----------------------------------------------------------

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_overwrite_allocated_code(byte* source, byte* target, UIntPtr size);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_overwrite_allocated_code_ex(
            byte* source, byte* target, UIntPtr size, NativeWriteCallback write, IntPtr context);

        // --- Private allocations --------------------------------------------

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_allocate_private_memory(
            ref NativeAllocatorSettings settings, out PrivateAllocationHandle allocation);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_private_allocation_base_address(
            PrivateAllocationHandle allocation, out UIntPtr baseAddress);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_private_allocation_size(
            PrivateAllocationHandle allocation, out UIntPtr size);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_private_allocation_process_id(
            PrivateAllocationHandle allocation, out uint processId);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_private_allocation_write(
            PrivateAllocationHandle allocation, UIntPtr offset, byte* bytes, UIntPtr length);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_private_allocation_read(
            PrivateAllocationHandle allocation, UIntPtr offset, byte* destination, UIntPtr length);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_release_private_allocation(ref IntPtr allocation);

        // --- Settings and system facts --------------------------------------

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_search_settings_from_proximity(
            UIntPtr proximity, UIntPtr target, UIntPtr size, out NativeSearchSettings settings);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_allocator_settings_from_proximity(
            UIntPtr proximity, UIntPtr target, UIntPtr size, out NativeAllocatorSettings settings);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_allocation_granularity(out UIntPtr granularity);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_highest_user_address(out UIntPtr address);

        // --- Errors ---------------------------------------------------------

        // Returned as a pointer, not a string: the text is static and must not
        // be freed, which the marshaller would do with a `string` return.
        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern IntPtr memory_buffers_status_message(int status);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_last_error(out NativeErrorInfo info);

        [DllImport(Library, CallingConvention = Convention, ExactSpelling = true)]
        internal static extern int memory_buffers_last_error_message(byte* buffer, UIntPtr capacity, out UIntPtr length);
    }
}
