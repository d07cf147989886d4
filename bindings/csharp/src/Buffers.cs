// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Interop;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers
{
    /// <summary>
    ///     Writes <paramref name="size"/> bytes from <paramref name="source"/> to
    ///     <paramref name="target"/>, for
    ///     <see cref="Buffers.OverwriteAllocatedCodeEx(ReadOnlySpan{byte}, nuint, CodeWriter)"/>.
    ///     Called while the target range is writable; it must write only inside it.
    /// </summary>
    public delegate void CodeWriter(nuint source, nuint target, nuint size);

    /// <summary>
    ///     The library's entry points: shared buffers, private memory, and
    ///     rewriting code already placed in buffers. Every method is safe to call
    ///     from any number of threads at once.
    /// </summary>
    /// <remarks>
    ///     Buffers are shared with every buffers library in the process (this
    ///     one, other copies of the native library, the original C# and Rust
    ///     libraries): they all find each other's buffers through one locator.
    /// </remarks>
    public static class Buffers
    {
        /// <summary>
        ///     Gets exclusive use of a shared buffer with at least
        ///     <c>settings.Size</c> free bytes, all between <c>settings.MinAddress</c>
        ///     and <c>settings.MaxAddress</c>, creating one (as near
        ///     <c>settings.Target</c> as possible, or without one in the
        ///     smallest free hole that holds it) if none exists.
        /// </summary>
        /// <returns>The buffer; dispose it (with <c>using</c>) to hand it back.</returns>
        /// <exception cref="MemoryBufferAllocationException">
        ///     No buffer could be found or made, or the settings are invalid
        ///     (<see cref="MemoryBuffersException.Status"/> says which).
        /// </exception>
        public static SafeLocatorItem GetBuffer(BufferSearchSettings settings)
        {
            NativeSearchSettings native = settings.ToNative();
            int status = NativeMethods.memory_buffers_get_buffer(ref native, out LockedBufferHandle handle);
            return WrapBuffer(status, handle);
        }

        /// <summary>
        ///     Like <see cref="GetBuffer(BufferSearchSettings)"/>, and the buffer's
        ///     next write position is a multiple of <paramref name="alignment"/> (a
        ///     power of two, at most the allocation granularity). Padding skipped to
        ///     align counts as used.
        /// </summary>
        /// <exception cref="MemoryBufferAllocationException">
        ///     As for <see cref="GetBuffer(BufferSearchSettings)"/>, and with
        ///     <see cref="MemoryBuffersStatus.AlignmentNotPowerOfTwo"/> or
        ///     <see cref="MemoryBuffersStatus.AlignmentAboveGranularity"/> for a
        ///     bad alignment.
        /// </exception>
        public static SafeLocatorItem GetBuffer(BufferSearchSettings settings, uint alignment)
        {
            NativeSearchSettings native = settings.ToNative();
            int status = NativeMethods.memory_buffers_get_buffer_aligned(ref native, (UIntPtr)alignment, out LockedBufferHandle handle);
            return WrapBuffer(status, handle);
        }

        /// <summary>
        ///     Maps read/write/execute pages between <c>settings.MinAddress</c> and
        ///     <c>settings.MaxAddress</c>, as near <c>settings.Target</c> as
        ///     possible (or without one in the smallest free hole that holds them), in <c>settings.TargetProcess</c>. The memory is for the
        ///     caller alone.
        /// </summary>
        /// <returns>The allocation; dispose it to unmap the pages.</returns>
        /// <exception cref="MemoryBufferAllocationException">
        ///     No memory could be allocated, the settings are invalid, or the target
        ///     process cannot be reached (<see cref="MemoryBuffersException.Status"/>
        ///     says which).
        /// </exception>
        public static PrivateAllocation AllocatePrivateMemory(BufferAllocatorSettings settings)
        {
            NativeAllocatorSettings native = settings.ToNative();
            int status = NativeMethods.memory_buffers_allocate_private_memory(ref native, out PrivateAllocationHandle handle);
            if (status != (int)MemoryBuffersStatus.Ok)
            {
                // Read the failure before anything else calls the library.
                var failure = NativeFailure.Read(status);
                handle?.Dispose();
                throw new MemoryBufferAllocationException(failure);
            }
            try
            {
                return new PrivateAllocation(handle);
            }
            catch
            {
                handle.Dispose();
                throw;
            }
        }

        /// <summary>
        ///     Rewrites code already written into a shared buffer: copies
        ///     <paramref name="source"/> to <paramref name="target"/>, then flushes
        ///     the instruction cache for the range. Used to re-point a hook.
        /// </summary>
        /// <remarks>
        ///     No thread may execute the target bytes while they are rewritten,
        ///     unless every intermediate state is valid code, and no other thread
        ///     may rewrite the same range at the same time.
        /// </remarks>
        /// <exception cref="MemoryBuffersException">
        ///     <see cref="MemoryBuffersStatus.OutsideBuffers"/> unless the whole
        ///     range lies inside the written part of one buffer (nothing is
        ///     written); <see cref="MemoryBuffersStatus.ZeroSize"/> for no bytes.
        /// </exception>
        public static unsafe void OverwriteAllocatedCode(ReadOnlySpan<byte> source, nuint target)
        {
            fixed (byte* bytes = &MemoryMarshal.GetReference(source))
                NativeFailure.Check(NativeMethods.memory_buffers_overwrite_allocated_code(
                    bytes, (byte*)(void*)target, (UIntPtr)source.Length));
        }

        /// <inheritdoc cref="OverwriteAllocatedCode(ReadOnlySpan{byte}, nuint)"/>
        /// <exception cref="ArgumentNullException"><paramref name="source"/> is null.</exception>
        public static void OverwriteAllocatedCode(byte[] source, nuint target)
        {
            if (source == null)
                throw new ArgumentNullException(nameof(source));
            OverwriteAllocatedCode((ReadOnlySpan<byte>)source, target);
        }

        /// <summary>
        ///     Copies <paramref name="size"/> bytes from <paramref name="source"/> over
        ///     code in a buffer at <paramref name="target"/>: the pointer form of
        ///     <see cref="OverwriteAllocatedCode(ReadOnlySpan{byte}, nuint)"/>, as the
        ///     C interface takes it.
        /// </summary>
        /// <exception cref="MemoryBuffersException">As for <see cref="OverwriteAllocatedCode(ReadOnlySpan{byte}, nuint)"/>.</exception>
        public static unsafe void OverwriteAllocatedCode(byte* source, byte* target, nuint size)
        {
            NativeFailure.Check(NativeMethods.memory_buffers_overwrite_allocated_code(source, target, size));
        }

        /// <summary>
        ///     Like <see cref="OverwriteAllocatedCode(ReadOnlySpan{byte}, nuint)"/>, but
        ///     <paramref name="write"/> does the writing: it is called once, with the
        ///     addresses of the source bytes and of the target and the size, while
        ///     the target range is writable; the instruction cache is flushed after
        ///     it returns. It is not called when the range is refused.
        /// </summary>
        /// <remarks>
        ///     An exception thrown by <paramref name="write"/> is caught before it
        ///     could cross the native library's frames, and rethrown from this
        ///     method once the library has finished (with whatever
        ///     <paramref name="write"/> wrote by then left in place).
        /// </remarks>
        /// <exception cref="ArgumentNullException"><paramref name="write"/> is null.</exception>
        /// <exception cref="MemoryBuffersException">As for <see cref="OverwriteAllocatedCode(ReadOnlySpan{byte}, nuint)"/>.</exception>
        public static unsafe void OverwriteAllocatedCodeEx(ReadOnlySpan<byte> source, nuint target, CodeWriter write)
        {
            if (write == null)
                throw new ArgumentNullException(nameof(write));
            ExceptionDispatchInfo thrown = null;
            NativeWriteCallback shim = (context, from, to, size) =>
            {
                try
                {
                    write((nuint)(ulong)(long)from, (nuint)(ulong)(long)to, size);
                }
                catch (Exception exception)
                {
                    thrown = ExceptionDispatchInfo.Capture(exception);
                }
            };
            int status;
            fixed (byte* bytes = &MemoryMarshal.GetReference(source))
                status = NativeMethods.memory_buffers_overwrite_allocated_code_ex(
                    bytes, (byte*)(void*)target, (UIntPtr)source.Length, shim, IntPtr.Zero);
            // The delegate must outlive the native call that holds a pointer to it.
            GC.KeepAlive(shim);
            if (status != (int)MemoryBuffersStatus.Ok)
                throw new MemoryBuffersException(NativeFailure.Read(status));
            thrown?.Throw();
        }

        private static SafeLocatorItem WrapBuffer(int status, LockedBufferHandle handle)
        {
            if (status != (int)MemoryBuffersStatus.Ok)
            {
                var failure = NativeFailure.Read(status);
                handle?.Dispose();
                throw new MemoryBufferAllocationException(failure);
            }
            return new SafeLocatorItem(handle);
        }
    }
}
