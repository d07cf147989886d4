// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The original library's three README examples, written as the original
// writes them. The adaptations are the ones Mono's C# compiler (C# 7.2)
// needs, and no others:
//   - `nuint` is a using alias for System.UIntPtr (the type C# 9 compiles
//     `nuint` to), and int constants are cast to it: C# 7.2 converts
//     them to UIntPtr only explicitly;
//   - `using var x = ...;` (C# 8) is written `using (var x = ...) { }`;
//   - the original README's `item->Append(data)` is `item.Append(data)`: the
//     item is an object here, and the original's own SafeLocatorItem has an
//     `Append` method as well.

using nuint = System.UIntPtr;

using System;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class ReadmeExamples
    {
        internal static void Run()
        {
            Check.Group("README: get a buffer", GetABuffer);
            Check.Group("README: proximity", Proximity);
            Check.Group("README: private allocation", PrivateAllocationExample);
        }

        private static void GetABuffer()
        {
            byte[] data = { 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x2c, 0x20, 0x62, 0x75, 0x66, 0x66, 0x65, 0x72 };

            // --- as in the original README (adapted for mcs, see above) ---
            var settings = new BufferSearchSettings()
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                Size = 4096
            };

            // Make sure to dispose, so lock gets released.
            using (var item = Buffers.GetBuffer(settings))
            {
                // Write some data, get pointer to it.
                var ptr = item.Append(data);
                // --- end of the README's code ---

                Check.That((ulong)ptr + (ulong)data.Length - 1 <= int.MaxValue,
                    "the data was written inside [0, int.MaxValue] (at " + Check.Hex(ptr) + ")");
                Check.That(Memory.Same(data, Memory.Read(ptr, data.Length)), "the bytes at the returned pointer are the data");
                Check.Equal(Memory.Add(item.BaseAddress, item.Position), Memory.Add(ptr, (ulong)data.Length),
                    "the buffer's position moved past the data");
                Check.That(item.BytesLeft + item.Position == item.Size, "bytes left + position = size");
            }
        }

        private static void Proximity()
        {
            const ulong Target = 0x140000000;
            // --- as in the original README (adapted for mcs, see above) ---
            var settings = BufferSearchSettings.FromProximity((nuint)int.MaxValue, (nuint)0x140000000, (nuint)4096);
            using (var item = Buffers.GetBuffer(settings))
            {
                // --- end of the README's code ---
                Check.Equal((nuint)(Target - int.MaxValue), settings.MinAddress, "FromProximity: MinAddress = target - proximity");
                Check.Equal((nuint)(Target + int.MaxValue), settings.MaxAddress, "FromProximity: MaxAddress = target + proximity");
                Check.Equal(4096u, settings.Size, "FromProximity: Size");

                ulong next = (ulong)item.BaseAddress + item.Position;
                Check.That(item.BytesLeft >= 4096, "the buffer has the 4096 bytes asked for (" + item.BytesLeft + " left)");
                Check.That(next >= Target - int.MaxValue && next + 4096 - 1 <= Target + int.MaxValue,
                    "the free bytes lie within int.MaxValue of 0x140000000 (from 0x" + next.ToString("x") + ")");

                var ptr = item.Append(new byte[] { 0xe9, 0, 0, 0, 0 });
                long distance = (long)((ulong)ptr - Target);
                Check.That(Math.Abs(distance) <= int.MaxValue, "an appended jmp is within rel32 reach of the target");
            }
        }

        private static void PrivateAllocationExample()
        {
            nuint baseAddress;
            // --- as in the original README (adapted for mcs, see above) ---
            var settings = new BufferAllocatorSettings()
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                Size = 4096
            };

            using (var item = Buffers.AllocatePrivateMemory(settings))
            {
                // You have allocated memory in first 2GiB of address space.
                // Disposing this memory (via `using` statement) will free it.
                nuint address = item.BaseAddress;
                nuint size = item.Size;
                // --- end of the README's code ---

                baseAddress = address;
                Check.That((ulong)size >= 4096, "the allocation has at least 4096 bytes (" + (ulong)size + ")");
                Check.That((ulong)address + (ulong)size - 1 <= int.MaxValue,
                    "the allocation lies inside [0, int.MaxValue] (at " + Check.Hex(address) + ")");
                Check.Equal(System.Diagnostics.Process.GetCurrentProcess().Id, item.ProcessId, "the pages are in this process");

                // The pages are read/write/execute memory of this process.
                byte[] pattern = Memory.Pattern(64, 5);
                Memory.Write(Memory.Add(address, (ulong)size - 64), pattern);
                Check.That(Memory.Same(pattern, item.Read(Memory.Add((nuint)0, (ulong)size - 64), 64)),
                    "bytes written through the address read back through the allocation");
                Check.That(Memory.IsMapped(item.ProcessId, address), "the pages are mapped while the allocation lives");
            }
            Check.That(!Memory.IsMapped(System.Diagnostics.Process.GetCurrentProcess().Id, baseAddress),
                "disposing the allocation unmapped the pages");
        }
    }
}
