// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The kinds of append, aligned gets, and code written into a buffer, run,
// and rewritten.

using nuint = System.UIntPtr;

using System;
using System.Runtime.InteropServices;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct Pair
    {
        public int Small;
        public long Large;
    }

    internal struct HoldsReference
    {
        public string Text;
    }

    internal static class AppendAndCodeTests
    {
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate int ReturnsInt();

        internal static void Run()
        {
            Check.Group("appends: bytes, spans, values", Appends);
            Check.Group("appends: aligned GetBuffer", Aligned);
            if (RuntimeInformation.ProcessArchitecture == Architecture.X64)
                Check.Group("code: append, run, overwrite, overwrite with a writer", Code);
            else
                Check.Skip("code: append, run, overwrite", "the test's machine code is x86-64, this is " + RuntimeInformation.ProcessArchitecture);
        }

        private static unsafe void Appends()
        {
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x3800_0000_0000, 256)))
            {
                nuint next = Memory.Add(item.BaseAddress, item.Position);

                nuint fromArray = item.Append(new byte[] { 1, 2, 3 });
                Check.Equal(next, fromArray, "Append(byte[]) writes at the next address");

                Span<byte> span = stackalloc byte[4];
                span.Fill(0x44);
                nuint fromSpan = item.Append(span);
                Check.Equal(Memory.Add(fromArray, 3), fromSpan, "Append(Span<byte>) follows directly");
                ReadOnlySpan<byte> readOnly = new byte[] { 5, 6 };
                nuint fromReadOnly = item.Append(readOnly);
                Check.Equal(Memory.Add(fromSpan, 4), fromReadOnly, "Append(ReadOnlySpan<byte>) follows directly");

                var pair = new Pair { Small = 0x11223344, Large = 0x0102030405060708 };
                nuint fromValue = item.Append(pair);
                Check.Equal(Memory.Add(fromReadOnly, 2), fromValue, "Append<T> follows directly");
                Check.Equal((uint)(3 + 4 + 2 + sizeof(Pair)), (uint)((ulong)item.BaseAddress + item.Position - (ulong)next),
                    "the position advanced by 3 + 4 + 2 + sizeof(Pair) bytes");
                var back = (Pair)Marshal.PtrToStructure((IntPtr)(long)(ulong)fromValue, typeof(Pair));
                Check.That(back.Small == pair.Small && back.Large == pair.Large, "Append<T> wrote the value's bytes");
                Check.That(Memory.Same(new byte[] { 1, 2, 3, 0x44, 0x44, 0x44, 0x44, 5, 6 }, Memory.Read(fromArray, 9)),
                    "Append(byte[]), Append(Span) and Append(ReadOnlySpan) wrote their bytes");

                uint before = item.Position;
                nuint empty = item.Append(new byte[0]);
                Check.That(item.Position == before && empty == Memory.Add(item.BaseAddress, before), "an empty append writes nothing and returns the next address");

                // mcs has no `unmanaged` constraint; the check happens at run
                // time (a build with a modern compiler refuses this at compile time).
                Check.Throws<ArgumentException>(() => item.Append(new HoldsReference { Text = "no" }),
                    "Append<T> of a type holding references throws ArgumentException");
                Check.Equal(before, item.Position, "... and writes nothing");
                Check.Throws<ArgumentNullException>(() => item.Append((byte[])null), "Append(null) throws ArgumentNullException");
            }
        }

        private static void Aligned()
        {
            var settings = DisposalTests.Near(0x3900_0000_0000, 64);
            nuint baseAddress;
            uint size;
            using (var item = Buffers.GetBuffer(settings))
            {
                baseAddress = item.BaseAddress;
                size = item.Size;
                item.Append(new byte[] { 1, 2, 3 }); // leaves the position unaligned
            }
            var only = DisposalTests.Only(baseAddress, size);
            foreach (uint alignment in new uint[] { 16, 64, 256 })
            {
                using (var item = Buffers.GetBuffer(only, alignment))
                {
                    nuint next = Memory.Add(item.BaseAddress, item.Position);
                    Check.That((ulong)next % alignment == 0, "GetBuffer(settings, " + alignment + "): the next address " + Check.Hex(next) + " is aligned");
                    nuint at = item.Append(new byte[] { 0xaa, 0xbb, 0xcc });
                    Check.Equal(next, at, "GetBuffer(settings, " + alignment + "): the first append lands there");
                }
            }
        }

        private static int Run(nuint code)
        {
            var function = (ReturnsInt)Marshal.GetDelegateForFunctionPointer((IntPtr)(long)(ulong)code, typeof(ReturnsInt));
            return function();
        }

        private static unsafe void Code()
        {
            // mov eax, imm32; ret
            byte[] returns42 = { 0xb8, 42, 0, 0, 0, 0xc3 };
            nuint code;
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x3a00_0000_0000, 64)))
                code = item.AppendCode(returns42);
            Check.Equal(42, Run(code), "code appended with AppendCode runs after the buffer was handed back");

            Buffers.OverwriteAllocatedCode(new byte[] { 0xb8, 7, 0, 0, 0, 0xc3 }, code);
            Check.Equal(7, Run(code), "OverwriteAllocatedCode(bytes, address) re-pointed it");

            fixed (byte* patch = new byte[] { 0xb8, 8, 0, 0, 0, 0xc3 })
                Buffers.OverwriteAllocatedCode(patch, (byte*)(void*)code, (nuint)6);
            Check.Equal(8, Run(code), "OverwriteAllocatedCode(byte*, byte*, size) re-pointed it");

            int calls = 0;
            nuint seenTarget = default(nuint), seenSize = default(nuint);
            Buffers.OverwriteAllocatedCodeEx(new byte[] { 0xb8, 99, 0, 0, 0, 0xc3 }, code, (source, target, size) =>
            {
                calls++;
                seenTarget = target;
                seenSize = size;
                Memory.Write(target, Memory.Read(source, (int)(ulong)size));
            });
            Check.Equal(1, calls, "OverwriteAllocatedCodeEx calls the writer once");
            Check.That(seenTarget == code && (ulong)seenSize == 6, "... with the target address and the size");
            Check.Equal(99, Run(code), "... and the code it wrote runs");

            Check.Throws<InvalidOperationException>(
                () => Buffers.OverwriteAllocatedCodeEx(new byte[] { 0x90 }, code, (s, t, n) => { throw new InvalidOperationException("writer failed"); }),
                "an exception thrown by the writer reaches the caller");
            Check.Equal(99, Run(code), "... and the code is unchanged (the writer wrote nothing)");

            calls = 0;
            var refused = Check.Throws<MemoryBuffersException>(
                () => Buffers.OverwriteAllocatedCodeEx(new byte[] { 0x90 }, Memory.Add(code, 6 + 0x100000), (s, t, n) => calls++),
                "OverwriteAllocatedCodeEx outside the written part of a buffer throws");
            Check.That(refused != null && refused.Status == MemoryBuffersStatus.OutsideBuffers && calls == 0,
                "... with OutsideBuffers, without calling the writer");
        }
    }
}
