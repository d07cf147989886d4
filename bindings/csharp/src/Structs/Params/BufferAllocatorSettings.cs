// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using System.Diagnostics;
using Reloaded.Memory.Buffers.Interop;

namespace Reloaded.Memory.Buffers.Structs.Params
{
    /// <summary>
    ///     Where and how much private memory
    ///     <see cref="Buffers.AllocatePrivateMemory(BufferAllocatorSettings)"/>
    ///     should allocate: <see cref="Size"/> bytes (rounded up to the
    ///     allocation granularity) between <see cref="MinAddress"/> and
    ///     <see cref="MaxAddress"/>, in <see cref="TargetProcess"/>.
    /// </summary>
    /// <remarks>
    ///     Unset properties have the original library's defaults, for
    ///     <c>new BufferAllocatorSettings()</c> and <c>default</c> alike.
    /// </remarks>
    public struct BufferAllocatorSettings
    {
        /// <summary>The original library's default <see cref="RetryCount"/>.</summary>
        private const int DefaultRetryCount = 8;

        // Nullable so that a zeroed struct means "the default" (see
        // BufferSearchSettings).
        private nuint? _maxAddress;
        private uint? _size;
        private int? _retryCount;
        private bool? _bruteForce;
        private Process _targetProcess;

        /// <summary>Lowest address the allocation may use. Default 0.</summary>
        public nuint MinAddress { get; set; }

        /// <summary>
        ///     Highest address (inclusive) the allocation may use. Default: the
        ///     highest user-space address; larger values are clamped to it.
        /// </summary>
        public nuint MaxAddress
        {
            get => _maxAddress ?? SystemFacts.HighestUserAddress;
            set => _maxAddress = value;
        }

        /// <summary>Bytes wanted, rounded up to the allocation granularity. Default 4096.</summary>
        public uint Size
        {
            get => _size ?? 4096u;
            set => _size = value;
        }

        /// <summary>
        ///     The address placement aims at: of the free space in range, that
        ///     nearest to it is tried first; 0 (the default) for none, which
        ///     takes the smallest free hole that holds the memory, against its
        ///     edge. <c>FromProximity</c> sets its target, so that a range
        ///     cut short at 0 (a function low in a 32-bit game) still puts the
        ///     memory next to it. Not in the original library.
        /// </summary>
        public nuint Target { get; set; }

        /// <summary>
        ///     The process to allocate in. Default: this process. Another
        ///     process needs the rights of a debugger over it (Linux: ptrace;
        ///     Windows: <c>PROCESS_VM_OPERATION</c> and related rights).
        /// </summary>
        public Process TargetProcess
        {
            get => _targetProcess ?? SystemFacts.ThisProcess;
            set => _targetProcess = value;
        }

        /// <summary>
        ///     How many times the native library may re-read the address space
        ///     map when it changed between reading and allocating. Default 8.
        ///     Values below 0 count as 0, above 64 as 64.
        /// </summary>
        public int RetryCount
        {
            get => _retryCount ?? DefaultRetryCount;
            set => _retryCount = value;
        }

        /// <summary>
        ///     Kept for source compatibility with the original library, where it
        ///     enables a last-resort page-by-page search on Windows. It has no
        ///     effect here: the native library always searches the complete map
        ///     of free address space. Default <c>true</c>.
        /// </summary>
        public bool BruteForce
        {
            get => _bruteForce ?? true;
            set => _bruteForce = value;
        }

        /// <summary>
        ///     Settings for <paramref name="size"/> bytes within <paramref name="proximity"/>
        ///     bytes of <paramref name="target"/> on either side, saturating at 0
        ///     and at the top of user space.
        /// </summary>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> does not fit a <see cref="uint"/>.</exception>
        public static BufferAllocatorSettings FromProximity(nuint proximity, nuint target, nuint size)
        {
            if ((ulong)size > uint.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(size), "Size must fit in 32 bits.");
            NativeFailure.Check(NativeMethods.memory_buffers_allocator_settings_from_proximity(
                proximity, target, size, out NativeAllocatorSettings native));
            return new BufferAllocatorSettings
            {
                MinAddress = native.MinAddress,
                MaxAddress = native.MaxAddress,
                Size = (uint)(ulong)native.Size,
                Target = native.Target,
            };
        }

        /// <summary>
        ///     Rounds <see cref="Size"/> up to the allocation granularity and, on
        ///     Windows, raises <see cref="MinAddress"/> to at least one
        ///     granularity (where address 0 means "anywhere" to the system), as
        ///     the original library's method of that name. Allocation does both
        ///     by itself; calling this only makes the values visible.
        /// </summary>
        /// <exception cref="OverflowException">The rounded size does not fit a <see cref="uint"/>.</exception>
        public void Sanitize()
        {
            ulong granularity = SystemFacts.AllocationGranularity;
            if (SystemFacts.IsWindows && (ulong)MinAddress < granularity)
                MinAddress = (nuint)granularity;
            ulong rounded = ((ulong)Size + granularity - 1) / granularity * granularity;
            Size = checked((uint)rounded);
        }

        internal NativeAllocatorSettings ToNative()
        {
            int retries = RetryCount;
            return new NativeAllocatorSettings
            {
                MinAddress = MinAddress,
                MaxAddress = MaxAddress,
                Size = (UIntPtr)Size,
                Target = Target,
                RetryCount = retries < 0 ? 0u : (uint)retries,
                // 0 is this process; so is this process's own id. Reading the
                // id of a Process that was never started throws here, which
                // is the right place to learn about it.
                TargetProcessId = _targetProcess == null ? 0u : (uint)_targetProcess.Id,
            };
        }

        /// <inheritdoc />
        public override string ToString() =>
            "BufferAllocatorSettings { MinAddress = 0x" + ((ulong)MinAddress).ToString("X") +
            ", MaxAddress = 0x" + ((ulong)MaxAddress).ToString("X") + ", Size = " + Size +
            ", RetryCount = " + RetryCount + ", TargetProcess = " +
            (_targetProcess == null ? "this process" : _targetProcess.Id.ToString()) + " }";
    }
}
