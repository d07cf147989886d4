// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Many threads at once: getting and appending, one item shared by several
// threads, and errors recorded per thread.

using nuint = System.UIntPtr;

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct Stamp
    {
        public int Thread;
        public int Iteration;
        public long Check;
    }

    internal static class ThreadTests
    {
        private const int Threads = 8;
        private const int Iterations = 400;

        internal static void Run()
        {
            Check.Group("threads: " + Threads + " threads x " + Iterations + " GetBuffer + Append", ManyThreads);
            Check.Group("threads: one item shared by 4 threads", SharedItem);
            Check.Group("threads: each thread gets its own error", ErrorsPerThread);
        }

        private sealed class Written
        {
            public nuint Address;
            public byte[] Bytes;
        }

        private static void ManyThreads()
        {
            var settings = new BufferSearchSettings
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                Size = 64,
            };
            var held = new HashSet<ulong>();
            int doubleHolds = 0;
            var failures = new List<string>();
            var written = new List<Written>[Threads];
            var start = new ManualResetEvent(false);
            var workers = new Thread[Threads];
            for (int t = 0; t < Threads; t++)
            {
                int thread = t;
                written[thread] = new List<Written>();
                workers[thread] = new Thread(() =>
                {
                    start.WaitOne();
                    for (int i = 0; i < Iterations; i++)
                    {
                        try
                        {
                            using (var item = Buffers.GetBuffer(settings))
                            {
                                ulong baseAddress = (ulong)item.BaseAddress;
                                lock (held)
                                    if (!held.Add(baseAddress))
                                        doubleHolds++;
                                // Variable lengths, so appends land at every offset.
                                byte[] bytes = Memory.Pattern(1 + (thread * 7 + i) % 48, thread * Iterations + i);
                                written[thread].Add(new Written { Address = item.Append(bytes), Bytes = bytes });
                                var stamp = new Stamp { Thread = thread, Iteration = i, Check = ~((long)thread << 32 | (uint)i) };
                                nuint at = item.Append(stamp);
                                written[thread].Add(new Written { Address = at, Bytes = StampBytes(stamp) });
                                lock (held)
                                    held.Remove(baseAddress);
                            }
                        }
                        catch (Exception exception)
                        {
                            lock (failures)
                                failures.Add("thread " + thread + " iteration " + i + ": " + exception.Message);
                        }
                    }
                });
                workers[thread].Start();
            }
            start.Set();
            foreach (var worker in workers)
                worker.Join();

            Check.That(failures.Count == 0, "no call failed" + (failures.Count == 0 ? "" : " (" + failures.Count + ", first: " + failures[0] + ")"));
            Check.Equal(0, doubleHolds, "no buffer was held by two threads at once");

            var all = new List<Written>();
            foreach (var list in written)
                all.AddRange(list);
            Check.Equal(Threads * Iterations * 2, all.Count, "every append returned an address");

            int wrong = 0;
            foreach (var entry in all)
                if (!Memory.Same(entry.Bytes, Memory.Read(entry.Address, entry.Bytes.Length)))
                    wrong++;
            Check.Equal(0, wrong, "every byte written is still there, as written, after all threads finished");

            all.Sort((left, right) => ((ulong)left.Address).CompareTo((ulong)right.Address));
            int overlaps = 0;
            for (int i = 1; i < all.Count; i++)
                if ((ulong)all[i - 1].Address + (ulong)all[i - 1].Bytes.Length > (ulong)all[i].Address)
                    overlaps++;
            Check.Equal(0, overlaps, "no two appends overlap");

            int outside = 0;
            foreach (var entry in all)
                if ((ulong)entry.Address + (ulong)entry.Bytes.Length - 1 > int.MaxValue)
                    outside++;
            Check.Equal(0, outside, "every append lies inside the requested range");
        }

        private static byte[] StampBytes(Stamp stamp)
        {
            var bytes = new byte[Marshal.SizeOf(typeof(Stamp))];
            var pinned = GCHandle.Alloc(bytes, GCHandleType.Pinned);
            try
            {
                Marshal.StructureToPtr(stamp, pinned.AddrOfPinnedObject(), false);
            }
            finally
            {
                pinned.Free();
            }
            return bytes;
        }

        private static void SharedItem()
        {
            const int Sharers = 4, Appends = 100, Length = 8;
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x3700_0000_0000, Sharers * Appends * Length)))
            {
                uint start = item.Position;
                var addresses = new List<ulong>();
                var failures = new List<string>();
                var sharers = new Thread[Sharers];
                for (int s = 0; s < Sharers; s++)
                {
                    int sharer = s;
                    sharers[sharer] = new Thread(() =>
                    {
                        for (int i = 0; i < Appends; i++)
                        {
                            try
                            {
                                nuint at = item.Append(Memory.Pattern(Length, sharer * 1000 + i));
                                lock (addresses)
                                    addresses.Add((ulong)at);
                            }
                            catch (Exception exception)
                            {
                                lock (failures)
                                    failures.Add(exception.GetType().Name + ": " + exception.Message);
                            }
                        }
                    });
                    sharers[sharer].Start();
                }
                foreach (var sharer in sharers)
                    sharer.Join();
                Check.That(failures.Count == 0, "concurrent appends to one item all succeed (no HandleBusy)"
                    + (failures.Count == 0 ? "" : ": " + failures[0]));
                Check.Equal(start + Sharers * Appends * Length, item.Position, "the position advanced by every append");
                addresses.Sort();
                bool dense = addresses.Count == Sharers * Appends;
                for (int i = 0; dense && i < addresses.Count; i++)
                    dense = addresses[i] == (ulong)item.BaseAddress + start + (ulong)(i * Length);
                Check.That(dense, "the appends sit back to back, each at its own address");
            }
        }

        private static void ErrorsPerThread()
        {
            const int Rounds = 300;
            int mismatches = 0, unexpected = 0;
            var zeroSize = new Thread(() =>
            {
                for (int i = 0; i < Rounds; i++)
                {
                    ulong min = 0x10000 + (ulong)i * 0x1000;
                    try
                    {
                        Buffers.GetBuffer(new BufferSearchSettings { MinAddress = (nuint)min, MaxAddress = (nuint)(min + 0xffff), Size = 0 }).Dispose();
                        Interlocked.Increment(ref unexpected);
                    }
                    catch (MemoryBufferAllocationException exception)
                    {
                        if (exception.Status != MemoryBuffersStatus.ZeroSize || (ulong)exception.RequestMinAddress != min)
                            Interlocked.Increment(ref mismatches);
                    }
                }
            });
            var inverted = new Thread(() =>
            {
                for (int i = 0; i < Rounds; i++)
                {
                    ulong min = 0x900000 + (ulong)i * 0x1000;
                    try
                    {
                        Buffers.GetBuffer(new BufferSearchSettings { MinAddress = (nuint)min, MaxAddress = (nuint)(min - 1), Size = 16 }).Dispose();
                        Interlocked.Increment(ref unexpected);
                    }
                    catch (MemoryBufferAllocationException exception)
                    {
                        if (exception.Status != MemoryBuffersStatus.MinAboveMax || (ulong)exception.RequestMinAddress != min)
                            Interlocked.Increment(ref mismatches);
                    }
                }
            });
            zeroSize.Start();
            inverted.Start();
            zeroSize.Join();
            inverted.Join();
            Check.Equal(0, unexpected, "every invalid request from two threads failed");
            Check.Equal(0, mismatches, "each exception carries its own thread's status and request, never the other's");
        }
    }
}
