// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Failures come back as exceptions carrying the native library's status,
// its fixed status text and its message about the failed call.

using nuint = System.UIntPtr;

using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class ErrorTests
    {
        [DllImport("memory_buffers", CallingConvention = CallingConvention.Cdecl)]
        private static extern IntPtr memory_buffers_status_message(int status);

        private static string NativeStatusText(MemoryBuffersStatus status) =>
            Marshal.PtrToStringAnsi(memory_buffers_status_message((int)status));

        internal static void Run()
        {
            Check.Group("errors: GetBuffer", GetBufferErrors);
            Check.Group("errors: AllocatePrivateMemory", AllocationErrors);
            Check.Group("errors: appends and overwrites", WriteErrors);
        }

        /// <summary>Checks an exception's status and that its texts are the native library's.</summary>
        private static void Expect(MemoryBuffersException exception, MemoryBuffersStatus status, string function, string what)
        {
            if (exception == null)
                return;
            Check.Equal(status, exception.Status, what + ": Status");
            Check.Equal(NativeStatusText(status), exception.StatusMessage, what + ": StatusMessage is memory_buffers_status_message's text");
            Check.That(exception.Message.StartsWith(function + ":") && exception.Message.Length > function.Length + 2,
                what + ": Message is the library's last error message (\"" + exception.Message + "\")");
        }

        private static void GetBufferErrors()
        {
            var zero = Check.Throws<MemoryBufferAllocationException>(() => Buffers.GetBuffer(new BufferSearchSettings
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                Size = 0,
            }), "GetBuffer with Size 0 throws MemoryBufferAllocationException");
            Expect(zero, MemoryBuffersStatus.ZeroSize, "memory_buffers_get_buffer", "size 0");

            var inverted = Check.Throws<MemoryBufferAllocationException>(() => Buffers.GetBuffer(new BufferSearchSettings
            {
                MinAddress = (nuint)0x20000,
                MaxAddress = (nuint)0x10000,
                Size = 64,
            }), "GetBuffer with MinAddress > MaxAddress throws");
            Expect(inverted, MemoryBuffersStatus.MinAboveMax, "memory_buffers_get_buffer", "min > max");
            if (inverted != null)
            {
                Check.Equal((nuint)0x20000, inverted.RequestMinAddress, "min > max: RequestMinAddress is the request's");
                Check.Equal((nuint)0x10000, inverted.RequestMaxAddress, "min > max: RequestMaxAddress is the request's");
                Check.Equal((nuint)64, inverted.RequestSize, "min > max: RequestSize is the request's");
            }

            var small = Check.Throws<MemoryBufferAllocationException>(() => Buffers.GetBuffer(new BufferSearchSettings
            {
                MinAddress = (nuint)0x10000,
                MaxAddress = (nuint)0x10fff,
                Size = 0x2000,
            }), "GetBuffer with a range smaller than the size throws");
            Expect(small, MemoryBuffersStatus.RangeSmallerThanSize, "memory_buffers_get_buffer", "range < size");

            var alignment = Check.Throws<MemoryBufferAllocationException>(
                () => Buffers.GetBuffer(DisposalTests.Near(0x3500_0000_0000, 64), 3),
                "GetBuffer with alignment 3 throws");
            Expect(alignment, MemoryBuffersStatus.AlignmentNotPowerOfTwo, "memory_buffers_get_buffer_aligned", "alignment 3");

            var huge = Check.Throws<MemoryBufferAllocationException>(
                () => Buffers.GetBuffer(DisposalTests.Near(0x3500_0000_0000, 64), 1u << 30),
                "GetBuffer with an alignment above the granularity throws");
            Expect(huge, MemoryBuffersStatus.AlignmentAboveGranularity, "memory_buffers_get_buffer_aligned", "alignment 1 GiB");

            Check.Throws<ArgumentOutOfRangeException>(
                () => BufferSearchSettings.FromProximity((nuint)4096, (nuint)0x10000000, (nuint)(1UL << 32)),
                "FromProximity with a size above 32 bits throws ArgumentOutOfRangeException");
        }

        private static void AllocationErrors()
        {
            var zero = Check.Throws<MemoryBufferAllocationException>(() => Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                Size = 0,
            }), "AllocatePrivateMemory with Size 0 throws MemoryBufferAllocationException");
            Expect(zero, MemoryBuffersStatus.ZeroSize, "memory_buffers_allocate_private_memory", "size 0");

            var inverted = Check.Throws<MemoryBufferAllocationException>(() => Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
            {
                MinAddress = (nuint)int.MaxValue,
                MaxAddress = (nuint)0,
                Size = 4096,
            }), "AllocatePrivateMemory with MinAddress > MaxAddress throws");
            Expect(inverted, MemoryBuffersStatus.MinAboveMax, "memory_buffers_allocate_private_memory", "min > max");

            // A process that has exited: its id names no process any more.
            var exited = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false });
            exited.WaitForExit();
            var gone = Check.Throws<MemoryBufferAllocationException>(() => Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
            {
                MinAddress = (nuint)0,
                MaxAddress = (nuint)int.MaxValue,
                TargetProcess = exited,
            }), "AllocatePrivateMemory in a process that exited throws");
            if (gone != null)
                Check.Equal(MemoryBuffersStatus.ProcessNotRunning, gone.Status, "... with ProcessNotRunning");
            exited.Dispose();
        }

        private static void WriteErrors()
        {
            using (var item = Buffers.GetBuffer(DisposalTests.Near(0x3600_0000_0000, 64)))
            {
                uint position = item.Position;
                var tooBig = Check.Throws<MemoryBuffersException>(() => item.Append(new byte[item.BytesLeft + 1]),
                    "appending more than the bytes left throws MemoryBuffersException");
                Expect(tooBig, MemoryBuffersStatus.DoesNotFit, "memory_buffers_buffer_append_bytes", "append too big");
                Check.Equal(position, item.Position, "... and writes nothing");
                Check.That(!(tooBig is MemoryBufferAllocationException), "... and is not an allocation failure");
            }

            // Private memory is not a buffer: overwriting code there is refused.
            using (var allocation = Buffers.AllocatePrivateMemory(new BufferAllocatorSettings
            {
                MinAddress = (nuint)0x3600_0000_0000,
                MaxAddress = (nuint)0x3600_1000_0000,
            }))
            {
                Memory.Write(allocation.BaseAddress, new byte[] { 0xc3, 0xc3 });
                var outside = Check.Throws<MemoryBuffersException>(
                    () => Buffers.OverwriteAllocatedCode(new byte[] { 0x90, 0x90 }, allocation.BaseAddress),
                    "OverwriteAllocatedCode outside every buffer throws");
                Expect(outside, MemoryBuffersStatus.OutsideBuffers, "memory_buffers_overwrite_allocated_code", "overwrite outside buffers");
                Check.That(Memory.Same(new byte[] { 0xc3, 0xc3 }, Memory.Read(allocation.BaseAddress, 2)), "... and writes nothing");

                var beyond = Check.Throws<MemoryBuffersException>(
                    () => allocation.Write(allocation.Size, new byte[] { 1 }),
                    "writing past the end of a private allocation throws");
                if (beyond != null)
                    Check.Equal(MemoryBuffersStatus.DoesNotFit, beyond.Status, "... with DoesNotFit");
            }
        }
    }
}
