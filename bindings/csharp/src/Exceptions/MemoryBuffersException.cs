// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;

namespace Reloaded.Memory.Buffers.Exceptions
{
    /// <summary>
    ///     A call into the native library failed. <see cref="Status"/> says why;
    ///     <see cref="Exception.Message"/> is the library's own description of
    ///     the failure, naming the function and the requested range and size.
    /// </summary>
    /// <remarks>
    ///     Failures to get a buffer or allocate memory are thrown as the
    ///     derived <see cref="MemoryBufferAllocationException"/>, the type the
    ///     original library throws for them.
    /// </remarks>
    public class MemoryBuffersException : Exception
    {
        /// <summary>The status code the native call returned.</summary>
        public MemoryBuffersStatus Status { get; }

        /// <summary>
        ///     The native library's fixed description of <see cref="Status"/>
        ///     (<c>memory_buffers_status_message</c>).
        /// </summary>
        public string StatusMessage { get; }

        /// <summary>
        ///     The operating system's error code (<c>errno</c>, or the Win32
        ///     error) behind <see cref="MemoryBuffersStatus.OsError"/>; 0 otherwise.
        /// </summary>
        public int OsError { get; }

        /// <summary>The lowest address of the failed request; 0 if not applicable.</summary>
        public nuint RequestMinAddress { get; }

        /// <summary>The highest address of the failed request; 0 if not applicable.</summary>
        public nuint RequestMaxAddress { get; }

        /// <summary>The size of the failed request in bytes; 0 if not applicable.</summary>
        public nuint RequestSize { get; }

        /// <summary>Creates an exception for a failure outside the native library.</summary>
        public MemoryBuffersException() : this("A memory buffers operation failed.") { }

        /// <summary>Creates an exception for a failure outside the native library.</summary>
        public MemoryBuffersException(string message) : this(message, null) { }

        /// <summary>Creates an exception for a failure outside the native library.</summary>
        public MemoryBuffersException(string message, Exception innerException) : base(message, innerException)
        {
            Status = MemoryBuffersStatus.UnknownError;
            StatusMessage = message;
        }

        internal MemoryBuffersException(Interop.NativeFailure failure) : base(failure.Message)
        {
            Status = failure.Status;
            StatusMessage = failure.StatusMessage;
            OsError = failure.OsError;
            RequestMinAddress = failure.MinAddress;
            RequestMaxAddress = failure.MaxAddress;
            RequestSize = failure.Size;
        }
    }

    /// <summary>
    ///     No buffer could be found or made, or no memory allocated, within the
    ///     requested constraints (including invalid settings such as a zero
    ///     size or a minimum above the maximum).
    /// </summary>
    public class MemoryBufferAllocationException : MemoryBuffersException
    {
        /// <summary>Creates an exception without details.</summary>
        public MemoryBufferAllocationException() : this("Memory could not be allocated.") { }

        /// <summary>Creates an exception with a message.</summary>
        public MemoryBufferAllocationException(string message) : base(message) { }

        /// <summary>Creates an exception with a message and the exception that caused it.</summary>
        public MemoryBufferAllocationException(string message, Exception innerException) : base(message, innerException) { }

        /// <summary>
        ///     Creates an exception for <paramref name="size"/> bytes that did not fit
        ///     between <paramref name="start"/> and <paramref name="end"/>, as the
        ///     original library's constructor of the same shape.
        /// </summary>
        public MemoryBufferAllocationException(nuint start, nuint end, int size)
            : base("Failed to allocate " + size + " bytes in address range "
                   + ((ulong)start).ToString("X8") + " - " + ((ulong)end).ToString("X8") + ".") { }

        internal MemoryBufferAllocationException(Interop.NativeFailure failure) : base(failure) { }
    }
}
