// SPDX-License-Identifier: MIT OR Apache-2.0

namespace Reloaded.Memory.Buffers.Exceptions
{
    /// <summary>
    ///     Why a call into the native library failed: the C interface's
    ///     <c>MEMORY_BUFFERS_STATUS_*</c> codes, with the same values.
    /// </summary>
    /// <remarks>
    ///     A newer native library may return a code this enumeration does not
    ///     name; it is still carried through as its number.
    /// </remarks>
    public enum MemoryBuffersStatus
    {
        /// <summary>The call succeeded.</summary>
        Ok = 0,
        /// <summary>A required pointer was null (a bug in these bindings if it reaches you).</summary>
        NullPointer = 1,
        /// <summary>A handle was not live in this copy of the native library.</summary>
        InvalidHandle = 2,
        /// <summary>Another thread was using the handle at the same time.</summary>
        HandleBusy = 3,
        /// <summary>The requested size was zero.</summary>
        ZeroSize = 4,
        /// <summary>The size overflows when rounded up, or does not fit a buffer's 32-bit size.</summary>
        SizeTooLarge = 5,
        /// <summary><c>MinAddress</c> was greater than <c>MaxAddress</c>.</summary>
        MinAboveMax = 6,
        /// <summary>The address range holds fewer bytes than the size.</summary>
        RangeSmallerThanSize = 7,
        /// <summary>The whole range lies above the highest user-space address.</summary>
        RangeAboveUserSpace = 8,
        /// <summary>The alignment was zero or not a power of two.</summary>
        AlignmentNotPowerOfTwo = 9,
        /// <summary>The alignment was larger than the allocation granularity.</summary>
        AlignmentAboveGranularity = 10,
        /// <summary>An argument was invalid in a way without a code of its own.</summary>
        InvalidArgument = 11,
        /// <summary>No free address range of the size exists inside the range.</summary>
        NoSpaceInRange = 12,
        /// <summary>The system refused a read/write/execute mapping.</summary>
        ExecutableMemoryRefused = 13,
        /// <summary>The bytes do not fit in the buffer's free space; nothing was written.</summary>
        DoesNotFit = 14,
        /// <summary>The range to overwrite is not inside the written part of a buffer.</summary>
        OutsideBuffers = 15,
        /// <summary>The buffer was taken before <c>fork()</c> and belongs to the parent.</summary>
        ProcessForked = 16,
        /// <summary>A system call failed; <see cref="MemoryBuffersException.OsError"/> holds its error code.</summary>
        OsError = 17,
        /// <summary>This operating system is not supported.</summary>
        Unsupported = 18,
        /// <summary>A text buffer was too small.</summary>
        BufferTooSmall = 19,
        /// <summary>The native library panicked (a bug in it); the call was abandoned.</summary>
        Panic = 20,
        /// <summary>The native library failed in a way without a code of its own.</summary>
        UnknownError = 21,
        /// <summary>An append would end past the <c>MaxAddress</c> the buffer was requested with.</summary>
        OutsideRequestedRange = 22,
        /// <summary>The memory is executable and not writable now.</summary>
        NotWritable = 23,
        /// <summary>Part of the range to patch is not mapped.</summary>
        NotMapped = 24,
        /// <summary>The target process does not exist, or exited.</summary>
        ProcessNotRunning = 25,
        /// <summary>The system refused access to the target process.</summary>
        ProcessAccessDenied = 26,
        /// <summary>The target process could not be made to map memory.</summary>
        ProcessNotInjectable = 27,
    }
}
