// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using Reloaded.Memory.Buffers.Interop;

namespace Reloaded.Memory.Buffers.Structs.Params
{
    /// <summary>
    ///     Which shared buffer <see cref="Buffers.GetBuffer(BufferSearchSettings)"/>
    ///     should hand out: one with at least <see cref="Size"/> free bytes, all
    ///     of them between <see cref="MinAddress"/> and <see cref="MaxAddress"/>
    ///     (both inclusive).
    /// </summary>
    /// <remarks>
    ///     Unset properties have the original library's defaults: the whole
    ///     user address space and 4096 bytes, for <c>new BufferSearchSettings()</c>
    ///     and <c>default</c> alike.
    /// </remarks>
    public struct BufferSearchSettings
    {
        // Nullable so that a zeroed struct (which is what `new` gives before
        // C# 10) still means "the default", not 0.
        private nuint? _maxAddress;
        private uint? _size;

        /// <summary>Lowest address the free bytes may start at. Default 0.</summary>
        public nuint MinAddress { get; set; }

        /// <summary>
        ///     Highest address (inclusive) the free bytes may reach. Default: the
        ///     highest user-space address; larger values are clamped to it.
        /// </summary>
        public nuint MaxAddress
        {
            get => _maxAddress ?? SystemFacts.HighestUserAddress;
            set => _maxAddress = value;
        }

        /// <summary>Free bytes needed. Default 4096.</summary>
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
        ///     Settings for <paramref name="size"/> bytes within <paramref name="proximity"/>
        ///     bytes of <paramref name="target"/> on either side, saturating at 0
        ///     and at the top of user space.
        /// </summary>
        /// <remarks>
        ///     For a 5-byte <c>jmp rel32</c> in the buffer to reach
        ///     <paramref name="target"/>, use a proximity of at most about
        ///     <c>0x7FFFFFF0</c>.
        /// </remarks>
        /// <exception cref="ArgumentOutOfRangeException"><paramref name="size"/> does not fit a <see cref="uint"/>.</exception>
        public static BufferSearchSettings FromProximity(nuint proximity, nuint target, nuint size)
        {
            if ((ulong)size > uint.MaxValue)
                throw new ArgumentOutOfRangeException(nameof(size), "A buffer's size is at most 4 GiB minus one page.");
            NativeFailure.Check(NativeMethods.memory_buffers_search_settings_from_proximity(
                proximity, target, size, out NativeSearchSettings native));
            return new BufferSearchSettings
            {
                MinAddress = native.MinAddress,
                MaxAddress = native.MaxAddress,
                Size = (uint)(ulong)native.Size,
                Target = native.Target,
            };
        }

        internal NativeSearchSettings ToNative() => new NativeSearchSettings
        {
            MinAddress = MinAddress,
            MaxAddress = MaxAddress,
            Size = (UIntPtr)Size,
            Target = Target,
        };

        /// <inheritdoc />
        public override string ToString() =>
            "BufferSearchSettings { MinAddress = 0x" + ((ulong)MinAddress).ToString("X") +
            ", MaxAddress = 0x" + ((ulong)MaxAddress).ToString("X") + ", Size = " + Size + " }";
    }
}
