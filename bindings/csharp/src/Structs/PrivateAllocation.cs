// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using System.Runtime.InteropServices;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Interop;

namespace Reloaded.Memory.Buffers.Structs
{
    /// <summary>
    ///     Read/write/execute pages owned by the caller, from
    ///     <see cref="Buffers.AllocatePrivateMemory(Params.BufferAllocatorSettings)"/>,
    ///     in this process or in another one. <see cref="Dispose"/> unmaps them.
    /// </summary>
    /// <remarks>
    ///     As in the original library, the garbage collector frees the pages
    ///     of an allocation that is no longer referenced; keep it in a field (or
    ///     use <see cref="GC.KeepAlive"/>) for as long as the memory is used.
    ///     <see cref="BaseAddress"/> and <see cref="Size"/> are plain values and
    ///     stay readable after disposal; <see cref="Write(nuint, ReadOnlySpan{byte})"/>
    ///     and <see cref="Read(nuint, Span{byte})"/> then throw
    ///     <see cref="ObjectDisposedException"/>.
    /// </remarks>
    public sealed class PrivateAllocation : IDisposable
    {
        private readonly PrivateAllocationHandle _handle;
        private readonly object _gate = new object();

        /// <summary>Address of the first byte, in the process that holds the pages.</summary>
        public nuint BaseAddress { get; }

        /// <summary>Length in bytes: the requested size rounded up to the allocation granularity.</summary>
        public nuint Size { get; }

        /// <summary>Id of the process that holds the pages (this process's own id for local pages).</summary>
        public int ProcessId { get; }

        internal PrivateAllocation(PrivateAllocationHandle handle)
        {
            _handle = handle;
            NativeFailure.Check(NativeMethods.memory_buffers_private_allocation_base_address(handle, out UIntPtr baseAddress));
            NativeFailure.Check(NativeMethods.memory_buffers_private_allocation_size(handle, out UIntPtr size));
            NativeFailure.Check(NativeMethods.memory_buffers_private_allocation_process_id(handle, out uint processId));
            BaseAddress = baseAddress;
            Size = size;
            ProcessId = (int)processId;
        }

        /// <summary>Whether <see cref="Dispose"/> was called (or the finalizer freed the pages).</summary>
        public bool IsDisposed => _handle.IsClosed;

        /// <summary>
        ///     Copies <paramref name="bytes"/> to <paramref name="offset"/> bytes into
        ///     the allocation, in whichever process holds it. Pages in this process
        ///     can also be written through <see cref="BaseAddress"/> directly.
        /// </summary>
        /// <exception cref="MemoryBuffersException">
        ///     <see cref="MemoryBuffersStatus.DoesNotFit"/> if the bytes reach past the
        ///     end (nothing is written); <see cref="MemoryBuffersStatus.ProcessNotRunning"/>
        ///     if the process holding the pages exited.
        /// </exception>
        /// <exception cref="ObjectDisposedException">The allocation was disposed.</exception>
        public unsafe void Write(nuint offset, ReadOnlySpan<byte> bytes)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                fixed (byte* source = &MemoryMarshal.GetReference(bytes))
                    NativeFailure.Check(NativeMethods.memory_buffers_private_allocation_write(
                        _handle, offset, source, (UIntPtr)bytes.Length));
            }
        }

        /// <inheritdoc cref="Write(nuint, ReadOnlySpan{byte})"/>
        /// <exception cref="ArgumentNullException"><paramref name="bytes"/> is null.</exception>
        public void Write(nuint offset, byte[] bytes)
        {
            if (bytes == null)
                throw new ArgumentNullException(nameof(bytes));
            Write(offset, (ReadOnlySpan<byte>)bytes);
        }

        /// <summary>
        ///     Fills <paramref name="destination"/> from <paramref name="offset"/>
        ///     bytes into the allocation, in whichever process holds it.
        /// </summary>
        /// <exception cref="MemoryBuffersException">As for <see cref="Write(nuint, ReadOnlySpan{byte})"/>.</exception>
        /// <exception cref="ObjectDisposedException">The allocation was disposed.</exception>
        public unsafe void Read(nuint offset, Span<byte> destination)
        {
            lock (_gate)
            {
                ThrowIfDisposed();
                fixed (byte* target = &MemoryMarshal.GetReference(destination))
                    NativeFailure.Check(NativeMethods.memory_buffers_private_allocation_read(
                        _handle, offset, target, (UIntPtr)destination.Length));
            }
        }

        /// <summary>Reads <paramref name="count"/> bytes from <paramref name="offset"/> bytes into the allocation.</summary>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is negative.</exception>
        /// <exception cref="MemoryBuffersException">As for <see cref="Write(nuint, ReadOnlySpan{byte})"/>.</exception>
        /// <exception cref="ObjectDisposedException">The allocation was disposed.</exception>
        public byte[] Read(nuint offset, int count)
        {
            if (count < 0)
                throw new ArgumentOutOfRangeException(nameof(count));
            var bytes = new byte[count];
            Read(offset, bytes);
            return bytes;
        }

        /// <summary>Unmaps the pages. Calling it again does nothing.</summary>
        public void Dispose() => _handle.Dispose();

        private void ThrowIfDisposed()
        {
            if (_handle.IsClosed)
                throw new ObjectDisposedException(nameof(PrivateAllocation), "The memory was already freed.");
        }
    }
}
