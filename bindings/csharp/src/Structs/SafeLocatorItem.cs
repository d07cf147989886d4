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
    ///     Exclusive use of one shared buffer, from
    ///     <see cref="Buffers.GetBuffer(Params.BufferSearchSettings)"/>. Dispose it
    ///     (with <c>using</c>) to hand the buffer back: until then nobody else in
    ///     the process, in any buffers library, gets it.
    /// </summary>
    /// <remarks>
    ///     <para>
    ///         Bytes appended stay at their address for the life of the process;
    ///         whoever gets the buffer next continues after them.
    ///     </para>
    ///     <para>
    ///         A class here, where the original has a struct: a struct is copied
    ///         on assignment, and a copy could not know that another copy was
    ///         disposed. This object knows, so every use after
    ///         <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>,
    ///         a second <see cref="Dispose"/> does nothing, and a forgotten item is
    ///         released by the garbage collector's finalizer.
    ///     </para>
    ///     <para>
    ///         Safe to use from several threads: calls on one item are made one
    ///         at a time.
    ///     </para>
    /// </remarks>
    public sealed class SafeLocatorItem : IDisposable
    {
        private readonly LockedBufferHandle _handle;

        // The native library allows one call at a time per handle and answers
        // HandleBusy to a second; waiting here instead makes concurrent use of
        // one item correct rather than an error.
        private readonly object _gate = new object();

        internal SafeLocatorItem(LockedBufferHandle handle) => _handle = handle;

        /// <summary>Address of the first byte of the buffer.</summary>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public nuint BaseAddress
        {
            get
            {
                UIntPtr value;
                lock (_gate)
                {
                    ThrowIfDisposed();
                    NativeFailure.Check(NativeMethods.memory_buffers_buffer_base_address(_handle, out value));
                }
                return value;
            }
        }

        /// <summary>Total size of the buffer in bytes.</summary>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public uint Size => (uint)(ulong)Query(Field.Size);

        /// <summary>Bytes already used in the buffer, by this and every earlier holder.</summary>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public uint Position => (uint)(ulong)Query(Field.Position);

        /// <summary>Bytes that can still be appended.</summary>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public uint BytesLeft => (uint)(ulong)Query(Field.BytesLeft);

        /// <summary>Whether <see cref="Dispose"/> was called (or the finalizer released the buffer).</summary>
        public bool IsDisposed => _handle.IsClosed;

        /// <summary>
        ///     Copies <paramref name="data"/> to the buffer's current position and
        ///     advances the position past it.
        /// </summary>
        /// <returns>The address the bytes were written to.</returns>
        /// <exception cref="MemoryBuffersException">
        ///     With <see cref="MemoryBuffersStatus.DoesNotFit"/> when fewer bytes
        ///     are left (nothing is written; the original writes past the end).
        /// </exception>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public nuint Append(ReadOnlySpan<byte> data) => AppendCore(data, code: false);

        /// <inheritdoc cref="Append(ReadOnlySpan{byte})"/>
        public nuint Append(Span<byte> data) => AppendCore(data, code: false);

        /// <inheritdoc cref="Append(ReadOnlySpan{byte})"/>
        /// <exception cref="ArgumentNullException"><paramref name="data"/> is null.</exception>
        public nuint Append(byte[] data)
        {
            if (data == null)
                throw new ArgumentNullException(nameof(data));
            return AppendCore(data, code: false);
        }

        /// <summary>
        ///     Appends the bytes of a blittable value (its in-memory
        ///     representation, as the original library writes it).
        /// </summary>
        /// <returns>The address the value was written to.</returns>
        /// <exception cref="MemoryBuffersException">The value does not fit (<see cref="MemoryBuffersStatus.DoesNotFit"/>).</exception>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
#if MONO_MCS
        // mcs has no `unmanaged` constraint (C# 7.3); MemoryMarshal.AsBytes
        // makes the same promise at run time, throwing ArgumentException for a
        // type that holds references. (mcs also compiles `in` as a by-value
        // parameter; callers write the same code either way.)
        public nuint Append<T>(in T data) where T : struct
        {
            T copy = data;
            return AppendCore(MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref copy, 1)), code: false);
        }
#else
        public unsafe nuint Append<T>(in T data) where T : unmanaged
        {
            T copy = data;
            return AppendCore(new ReadOnlySpan<byte>(&copy, sizeof(T)), code: false);
        }
#endif

        /// <summary>
        ///     Appends machine code: like <see cref="Append(ReadOnlySpan{byte})"/>, then
        ///     makes the written range safe to execute (flushes the instruction
        ///     cache, which AArch64 needs and x86-64 does not).
        /// </summary>
        /// <returns>The address the code was written to.</returns>
        /// <exception cref="MemoryBuffersException">The code does not fit (<see cref="MemoryBuffersStatus.DoesNotFit"/>).</exception>
        /// <exception cref="ObjectDisposedException">The item was disposed.</exception>
        public nuint AppendCode(ReadOnlySpan<byte> code) => AppendCore(code, code: true);

        /// <inheritdoc cref="AppendCode(ReadOnlySpan{byte})"/>
        /// <exception cref="ArgumentNullException"><paramref name="code"/> is null.</exception>
        public nuint AppendCode(byte[] code)
        {
            if (code == null)
                throw new ArgumentNullException(nameof(code));
            return AppendCore(code, code: true);
        }

        /// <summary>
        ///     Hands the buffer back. The bytes appended stay where they are.
        ///     Calling it again does nothing.
        /// </summary>
        public void Dispose() => _handle.Dispose();

        private unsafe nuint AppendCore(ReadOnlySpan<byte> data, bool code)
        {
            UIntPtr address;
            lock (_gate)
            {
                ThrowIfDisposed();
                fixed (byte* bytes = &MemoryMarshal.GetReference(data))
                {
                    int status = code
                        ? NativeMethods.memory_buffers_buffer_append_code(_handle, bytes, (UIntPtr)data.Length, out address)
                        : NativeMethods.memory_buffers_buffer_append_bytes(_handle, bytes, (UIntPtr)data.Length, out address);
                    NativeFailure.Check(status);
                }
            }
            return address;
        }

        private enum Field { Size, Position, BytesLeft }

        private UIntPtr Query(Field field)
        {
            UIntPtr value;
            lock (_gate)
            {
                ThrowIfDisposed();
                int status;
                switch (field)
                {
                    case Field.Size: status = NativeMethods.memory_buffers_buffer_size(_handle, out value); break;
                    case Field.Position: status = NativeMethods.memory_buffers_buffer_position(_handle, out value); break;
                    default: status = NativeMethods.memory_buffers_buffer_bytes_left(_handle, out value); break;
                }
                NativeFailure.Check(status);
            }
            return value;
        }

        // The marshaller refuses a closed SafeHandle too (and, through its
        // reference count, keeps a handle alive while a call with it runs);
        // this check only gives the exception a clear object name.
        private void ThrowIfDisposed()
        {
            if (_handle.IsClosed)
                throw new ObjectDisposedException(nameof(SafeLocatorItem), "The buffer was already handed back.");
        }
    }
}
