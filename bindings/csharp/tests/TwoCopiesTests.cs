// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Two instances of the native library in one process: the one behind the
// C# API (`memory_buffers`) and a second copy of the same file loaded under
// another name (`memory_buffers_second`), with its own handle table. They
// must share one locator: each finds the buffers the other made, never hands
// out a buffer the other holds, and continues after the other's bytes.

using nuint = System.UIntPtr;

using System;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class TwoCopiesTests
    {
        private const int Ok = 0, InvalidHandle = 2, NoSpaceInRange = 12;

        // The reasons a locator is private that come from the machine, not
        // from the library: rendezvous directories another user (or an older
        // run) left that this user may not use. Anything else fails the test.
        private const int DirectoryUnavailable = 1, DirectoryNotTrusted = 2, FileUnavailable = 4;
        private const int EPERM = 1, EACCES = 13, EROFS = 30;

        internal static void Run() => Check.Group("two copies of the native library share one locator", TwoCopies);

        private static void TwoCopies()
        {
            IRawCopy first = new FirstCopy(), second = new SecondCopy();
            Check.Equal(first.VersionNumber(), second.VersionNumber(), "both copies are the same library version");

            Check.Equal(Ok, first.LocatorKind(out RawLocatorKind firstKind), "first copy: locator_kind");
            Check.Equal(Ok, second.LocatorKind(out RawLocatorKind secondKind), "second copy: locator_kind");
            if (firstKind.Shared == 0 && IsMachineReason(firstKind))
            {
                Check.Skip("two copies", "the locator is private (reason " + firstKind.PrivateReason + ", errno " + firstKind.OsError
                    + "): /tmp/.reloaded/memory.buffers is not usable by this user");
                return;
            }
            Check.That(firstKind.Shared == 1 && secondKind.Shared == 1, "both copies use the shared locator");
            first.LocatorAddress(out UIntPtr firstLocator);
            second.LocatorAddress(out UIntPtr secondLocator);
            Check.That(firstLocator != UIntPtr.Zero && firstLocator == secondLocator,
                "both copies found the same locator (" + Check.Hex(firstLocator) + ", " + Check.Hex(secondLocator) + ")");

            SeparateInstances(first, second);
            HeldBufferIsNotHandedOut(second);
            EachFindsTheOthersNewBuffer(second);
        }

        private static bool IsMachineReason(RawLocatorKind kind) =>
            kind.PrivateReason == DirectoryUnavailable || kind.PrivateReason == DirectoryNotTrusted
            || (kind.PrivateReason == FileUnavailable && (kind.OsError == EPERM || kind.OsError == EACCES || kind.OsError == EROFS));

        private static RawSearchSettings Raw(BufferSearchSettings settings) => new RawSearchSettings
        {
            MinAddress = settings.MinAddress,
            MaxAddress = settings.MaxAddress,
            Size = (UIntPtr)settings.Size,
        };

        /// <summary>Two instances, not one library reached under two names: a handle of one is foreign to the other.</summary>
        private static void SeparateInstances(IRawCopy first, IRawCopy second)
        {
            var settings = Raw(DisposalTests.Near(0x4000_0000_0000, 64));
            Check.Equal(Ok, first.GetBuffer(ref settings, out IntPtr handle), "first copy: get_buffer");
            IntPtr foreign = handle;
            Check.Equal(InvalidHandle, second.Release(ref foreign), "the second copy rejects a handle of the first (separate instances)");
            Check.Equal(handle, foreign, "... and leaves the variable alone");
            Check.Equal(Ok, first.Release(ref handle), "the first copy releases its own handle");
            Check.Equal(IntPtr.Zero, handle, "... and sets the variable to NULL");
        }

        /// <summary>The C# API holds a buffer; the other copy cannot get it, then continues after its bytes.</summary>
        private static void HeldBufferIsNotHandedOut(IRawCopy second)
        {
            byte[] fromCSharp = Memory.Pattern(32, 101), fromSecond = Memory.Pattern(24, 202), fromCSharpAgain = Memory.Pattern(8, 303);
            nuint baseAddress, atCSharp;
            uint size, start;
            BufferSearchSettings only;
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x4100_0000_0000, 64)))
            {
                baseAddress = item.BaseAddress;
                size = item.Size;
                start = item.Position;
                only = DisposalTests.Only(baseAddress, size);

                var raw = Raw(only);
                Check.Equal(NoSpaceInRange, second.GetBuffer(ref raw, out IntPtr none),
                    "while the C# API holds a buffer, the second copy cannot get it");
                Check.Equal(IntPtr.Zero, none, "... and gets no handle");

                atCSharp = item.Append(fromCSharp);
                Check.Equal(Memory.Add(baseAddress, start), atCSharp, "the C# API appends at the buffer's position");
            }

            var onlyRaw = Raw(only);
            Check.Equal(Ok, second.GetBuffer(ref onlyRaw, out IntPtr handle), "after Dispose the second copy gets that buffer");
            second.BaseAddress(handle, out UIntPtr secondBase);
            second.Position(handle, out UIntPtr secondPosition);
            Check.Equal(baseAddress, secondBase, "... the same buffer");
            Check.Equal((ulong)start + 32, (ulong)secondPosition, "... positioned after the C# API's 32 bytes");
            second.Append(handle, fromSecond, out UIntPtr atSecond);
            Check.Equal(Memory.Add(atCSharp, 32), atSecond, "the second copy appends right after them");
            Check.Equal(Ok, second.Release(ref handle), "the second copy releases it");

            using (var item = Buffers.GetBuffer(only))
            {
                Check.Equal((uint)(start + 32 + 24), item.Position, "the C# API sees both appends in the position");
                Check.Equal(Memory.Add(atSecond, 24), item.Append(fromCSharpAgain), "and appends after the second copy's bytes");
            }
            Check.That(Memory.Same(fromCSharp, Memory.Read(atCSharp, 32))
                       && Memory.Same(fromSecond, Memory.Read(atSecond, 24))
                       && Memory.Same(fromCSharpAgain, Memory.Read(Memory.Add(atSecond, 24), 8)),
                "nobody overwrote anybody's bytes");
        }

        /// <summary>A buffer created by one instance, in a range nobody used before, is found by the other.</summary>
        private static void EachFindsTheOthersNewBuffer(IRawCopy second)
        {
            // Made by the second copy, found through the C# API.
            var fresh = Raw(DisposalTests.Near(0x4200_0000_0000, 128));
            Check.Equal(Ok, second.GetBuffer(ref fresh, out IntPtr handle), "the second copy creates a buffer in a fresh range");
            second.BaseAddress(handle, out UIntPtr madeBySecond);
            second.Size(handle, out UIntPtr madeSize);
            second.Append(handle, Memory.Pattern(5, 404), out UIntPtr unused);
            second.Release(ref handle);
            using (var item = Buffers.GetBuffer(DisposalTests.Only(madeBySecond, (uint)(ulong)madeSize)))
            {
                Check.Equal(madeBySecond, item.BaseAddress, "the C# API finds the buffer the second copy made");
                Check.Equal(5u, item.Position, "... with the second copy's 5 bytes in it");
            }

            // Made through the C# API, found by the second copy.
            nuint madeByCSharp;
            uint size;
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x4300_0000_0000, 128)))
            {
                madeByCSharp = item.BaseAddress;
                size = item.Size;
                Check.Equal(0u, item.Position, "the C# API creates a buffer in a fresh range");
                item.Append(Memory.Pattern(7, 505));
            }
            var found = Raw(DisposalTests.Only(madeByCSharp, size));
            Check.Equal(Ok, second.GetBuffer(ref found, out handle), "the second copy finds the buffer the C# API made");
            second.BaseAddress(handle, out UIntPtr foundBase);
            second.Position(handle, out UIntPtr foundPosition);
            Check.That(foundBase == madeByCSharp && (ulong)foundPosition == 7, "... the same buffer, with the C# API's 7 bytes in it");
            second.Release(ref handle);
        }
    }
}
