// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using System.Runtime.InteropServices;
using System.Text;
using Reloaded.Memory.Buffers.Exceptions;

namespace Reloaded.Memory.Buffers.Interop
{
    /// <summary>
    ///     What the native library recorded about the calling thread's last
    ///     failure, read right after the failing call.
    /// </summary>
    /// <remarks>
    ///     The library keeps the last error per operating-system thread. A
    ///     managed thread stays on one operating-system thread (Mono and .NET
    ///     both), and nothing calls the library between a failing call and
    ///     <see cref="Read"/>, so the record read is the failing call's own.
    /// </remarks>
    internal sealed class NativeFailure
    {
        internal MemoryBuffersStatus Status;
        internal string Message;
        internal string StatusMessage;
        internal int OsError;
        internal nuint MinAddress;
        internal nuint MaxAddress;
        internal nuint Size;

        /// <summary>Throws a <see cref="MemoryBuffersException"/> unless <paramref name="status"/> is OK.</summary>
        internal static void Check(int status)
        {
            if (status != (int)MemoryBuffersStatus.Ok)
                throw new MemoryBuffersException(Read(status));
        }

        /// <summary>Throws a <see cref="MemoryBufferAllocationException"/> unless <paramref name="status"/> is OK.</summary>
        internal static void CheckAllocation(int status)
        {
            if (status != (int)MemoryBuffersStatus.Ok)
                throw new MemoryBufferAllocationException(Read(status));
        }

        internal static NativeFailure Read(int status)
        {
            var failure = new NativeFailure
            {
                Status = (MemoryBuffersStatus)status,
                StatusMessage = StatusText(status),
            };
            // Details belong to this failure only if the library recorded this
            // status; otherwise the fixed text is all there is.
            if (NativeMethods.memory_buffers_last_error(out NativeErrorInfo info) == (int)MemoryBuffersStatus.Ok
                && info.Status == status)
            {
                failure.OsError = info.OsError;
                failure.MinAddress = info.MinAddress;
                failure.MaxAddress = info.MaxAddress;
                failure.Size = info.Size;
                failure.Message = LastErrorMessage();
            }
            if (string.IsNullOrEmpty(failure.Message))
                failure.Message = failure.StatusMessage;
            return failure;
        }

        internal static string StatusText(int status)
        {
            IntPtr text = NativeMethods.memory_buffers_status_message(status);
            return text == IntPtr.Zero ? "status " + status : Utf8(text);
        }

        private static unsafe string LastErrorMessage()
        {
            // Messages are one line; most fit the first try.
            const int FirstCapacity = 512;
            byte* first = stackalloc byte[FirstCapacity];
            int status = NativeMethods.memory_buffers_last_error_message(first, (UIntPtr)FirstCapacity, out UIntPtr length);
            if (status == (int)MemoryBuffersStatus.Ok)
                return Decode(first, length);
            if (status != (int)MemoryBuffersStatus.BufferTooSmall)
                return null;
            var whole = new byte[(int)(ulong)length];
            fixed (byte* start = whole)
            {
                status = NativeMethods.memory_buffers_last_error_message(start, (UIntPtr)whole.Length, out length);
                return status == (int)MemoryBuffersStatus.Ok ? Decode(start, length) : null;
            }
        }

        /// <summary>Decodes <paramref name="lengthWithNul"/> bytes, the last of which is the terminating NUL.</summary>
        private static unsafe string Decode(byte* text, UIntPtr lengthWithNul)
        {
            int length = (int)(ulong)lengthWithNul - 1;
            return length <= 0 ? string.Empty : Encoding.UTF8.GetString(text, length);
        }

        private static unsafe string Utf8(IntPtr text)
        {
            byte* start = (byte*)text;
            int length = 0;
            while (start[length] != 0)
                length++;
            return Encoding.UTF8.GetString(start, length);
        }
    }
}
