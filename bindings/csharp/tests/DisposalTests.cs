// SPDX-License-Identifier: MIT OR Apache-2.0
//
// What happens to a buffer or an allocation when it is disposed, disposed
// twice, used afterwards, or forgotten.

using nuint = System.UIntPtr;

using System;
using System.Diagnostics;
using System.Threading;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class DisposalTests
    {
        internal static void Run()
        {
            Check.Group("disposal: buffers", Buffers_);
            Check.Group("disposal: Dispose racing with appends on another thread", DisposeDuringAppends);
            Check.Group("disposal: a forgotten buffer is released by the finalizer", ForgottenBuffer);
            Check.Group("disposal: private allocations", Allocations);
            Check.Group("disposal: a forgotten allocation is freed by the finalizer", ForgottenAllocation);
        }

        /// <summary>Settings that only the buffer at <paramref name="baseAddress"/> can satisfy.</summary>
        internal static BufferSearchSettings Only(nuint baseAddress, uint size) => new BufferSearchSettings
        {
            MinAddress = baseAddress,
            MaxAddress = Memory.Add(baseAddress, size - 1),
            Size = 16,
        };

        /// <summary>A request near an address no other group uses, so it gets a buffer of its own.</summary>
        internal static BufferSearchSettings Near(ulong target, uint size) =>
            BufferSearchSettings.FromProximity((nuint)0x10000000, (nuint)target, (nuint)size);

        private static void Buffers_()
        {
            var item = Buffers.GetBuffer(Near(0x3100_0000_0000, 256));
            nuint baseAddress = item.BaseAddress;
            uint size = item.Size;
            var only = Only(baseAddress, size);

            var held = Check.Throws<MemoryBufferAllocationException>(() => Buffers.GetBuffer(only).Dispose(),
                "a held buffer is not handed out again");
            if (held != null)
                Check.Equal(MemoryBuffersStatus.NoSpaceInRange, held.Status, "... and the request finds no space");

            uint start = item.Position;
            item.Append(new byte[] { 1, 2, 3 });
            item.Dispose();
            Check.That(item.IsDisposed, "IsDisposed after Dispose");
            Check.NoThrow(item.Dispose, "a second Dispose is harmless");
            Check.Throws<ObjectDisposedException>(() => item.Append(new byte[] { 4 }), "Append after Dispose throws ObjectDisposedException");
            Check.Throws<ObjectDisposedException>(() => item.AppendCode(new byte[] { 0xc3 }), "AppendCode after Dispose throws ObjectDisposedException");
            Check.Throws<ObjectDisposedException>(() => item.Append(42), "Append<T> after Dispose throws ObjectDisposedException");
            Check.Throws<ObjectDisposedException>(() => { var unused = item.BaseAddress; }, "BaseAddress after Dispose throws ObjectDisposedException");
            Check.Throws<ObjectDisposedException>(() => { var unused = item.Position; }, "Position after Dispose throws ObjectDisposedException");

            using (var again = Buffers.GetBuffer(only))
            {
                Check.Equal(baseAddress, again.BaseAddress, "after Dispose the same buffer is handed out again");
                Check.Equal(start + 3, again.Position, "... with the 3 bytes appended before it kept");
            }
        }

        /// <summary>
        ///     Dispose while another thread appends: that thread sees only
        ///     ObjectDisposedException, never a released handle passed to the
        ///     library, and the buffer is released exactly once.
        /// </summary>
        private static void DisposeDuringAppends()
        {
            const int Rounds = 25, MostAppends = 2000;
            nuint baseAddress;
            uint size;
            using (var first = Buffers.GetBuffer(Near(0x3b00_0000_0000, 65536)))
            {
                baseAddress = first.BaseAddress;
                size = first.Size;
            }
            var only = Only(baseAddress, size);
            int disposedSeen = 0, otherErrors = 0, notRaced = 0, notReleased = 0;
            string firstOther = null;
            for (int round = 0; round < Rounds; round++)
            {
                var item = Buffers.GetBuffer(only);
                var appending = new ManualResetEvent(false);
                var appender = new Thread(() =>
                {
                    try
                    {
                        for (int i = 0; i < MostAppends; i++)
                        {
                            item.Append(new byte[] { (byte)i });
                            appending.Set();
                        }
                        Interlocked.Increment(ref notRaced);
                    }
                    catch (ObjectDisposedException)
                    {
                        Interlocked.Increment(ref disposedSeen);
                    }
                    catch (Exception exception)
                    {
                        Interlocked.Increment(ref otherErrors);
                        Interlocked.CompareExchange(ref firstOther, exception.GetType().Name + ": " + exception.Message, null);
                    }
                    appending.Set();
                });
                appender.Start();
                appending.WaitOne();
                item.Dispose();
                appender.Join();
                try
                {
                    Buffers.GetBuffer(only).Dispose();
                }
                catch (MemoryBufferAllocationException)
                {
                    notReleased++;
                }
            }
            Check.Equal(0, otherErrors, "the appending thread saw no error but ObjectDisposedException" + (firstOther == null ? "" : " (" + firstOther + ")"));
            Check.That(disposedSeen > 0, "in " + disposedSeen + " of " + Rounds + " rounds Dispose overtook the appends (" + notRaced + " finished first)");
            Check.Equal(0, notReleased, "after every round the buffer was released and could be got again");
        }

        // Filled by a thread that has ended: Mono scans thread stacks
        // conservatively, and an ended thread's stack holds no stale copy of
        // the reference that could keep the object alive.
        // Never read: a field only keeps its object reachable.
#pragma warning disable 414
        private static SafeLocatorItem s_forgottenItem;
        private static PrivateAllocation s_forgottenAllocation;
#pragma warning restore 414

        private static void ForgottenBuffer()
        {
            nuint baseAddress = default(nuint);
            uint size = 0;
            var maker = new Thread(() =>
            {
                var item = Buffers.GetBuffer(Near(0x3200_0000_0000, 128));
                item.Append(new byte[] { 9, 9 });
                baseAddress = item.BaseAddress;
                size = item.Size;
                s_forgottenItem = item;
            });
            maker.Start();
            maker.Join();
            var only = Only(baseAddress, size);

            var held = Check.Throws<MemoryBufferAllocationException>(() => Buffers.GetBuffer(only).Dispose(),
                "while the forgotten item is still referenced, its buffer stays taken");
            if (held != null)
                Check.Equal(MemoryBuffersStatus.NoSpaceInRange, held.Status, "... and the request finds no space");

            s_forgottenItem = null; // now nothing refers to it, and nobody disposed it
            SafeLocatorItem found = null;
            for (int attempt = 0; attempt < 20 && found == null; attempt++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                try
                {
                    found = Buffers.GetBuffer(only);
                }
                catch (MemoryBufferAllocationException)
                {
                    Thread.Sleep(10);
                }
            }
            Check.That(found != null, "after GC.Collect and WaitForPendingFinalizers the finalizer released the buffer");
            if (found != null)
            {
                Check.Equal(baseAddress, found.BaseAddress, "... and GetBuffer hands out that same buffer");
                found.Dispose();
            }
        }

        private static void Allocations()
        {
            int self = Process.GetCurrentProcess().Id;
            var allocation = Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
            {
                MinAddress = (nuint)0x3300_0000_0000,
                MaxAddress = (nuint)0x3300_1000_0000,
                Size = 100,
            });
            nuint baseAddress = allocation.BaseAddress;
            Check.Equal((nuint)4096, allocation.Size, "a 100-byte request is rounded up to one page");
            Check.That(Memory.IsMapped(self, baseAddress), "the pages are mapped");
            allocation.Write((nuint)10, new byte[] { 7, 8, 9 });
            Check.That(Memory.Same(new byte[] { 7, 8, 9 }, Memory.Read(Memory.Add(baseAddress, 10), 3)), "Write put the bytes at BaseAddress + offset");

            allocation.Dispose();
            Check.That(allocation.IsDisposed, "IsDisposed after Dispose");
            Check.That(!Memory.IsMapped(self, baseAddress), "Dispose unmapped the pages");
            Check.NoThrow(allocation.Dispose, "a second Dispose is harmless");
            Check.Equal(baseAddress, allocation.BaseAddress, "BaseAddress stays readable after Dispose (a plain value, as in the original)");
            Check.Throws<ObjectDisposedException>(() => allocation.Write((nuint)0, new byte[] { 1 }), "Write after Dispose throws ObjectDisposedException");
            Check.Throws<ObjectDisposedException>(() => allocation.Read((nuint)0, 1), "Read after Dispose throws ObjectDisposedException");
        }

        private static void ForgottenAllocation()
        {
            int self = Process.GetCurrentProcess().Id;
            nuint baseAddress = default(nuint);
            var maker = new Thread(() =>
            {
                var allocation = Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
                {
                    MinAddress = (nuint)0x3400_0000_0000,
                    MaxAddress = (nuint)0x3400_1000_0000,
                });
                baseAddress = allocation.BaseAddress;
                s_forgottenAllocation = allocation;
            });
            maker.Start();
            maker.Join();
            Check.That(Memory.IsMapped(self, baseAddress), "the forgotten allocation is mapped while referenced");

            s_forgottenAllocation = null;
            bool unmapped = false;
            for (int attempt = 0; attempt < 20 && !unmapped; attempt++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                unmapped = !Memory.IsMapped(self, baseAddress);
                if (!unmapped)
                    Thread.Sleep(10);
            }
            Check.That(unmapped, "after GC.Collect and WaitForPendingFinalizers the finalizer unmapped the pages");
        }
    }
}
