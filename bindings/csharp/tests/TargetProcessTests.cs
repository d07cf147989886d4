// SPDX-License-Identifier: MIT OR Apache-2.0
//
// `BufferAllocatorSettings.TargetProcess`: private memory in a child process
// this test starts, reached through Write and Read, and unmapped there on
// Dispose; this process as a target keeps the pages here.

using nuint = System.UIntPtr;

using System;
using System.Diagnostics;
using Reloaded.Memory.Buffers.Exceptions;
using Reloaded.Memory.Buffers.Structs;
using Reloaded.Memory.Buffers.Structs.Params;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class TargetProcessTests
    {
        internal static void Run()
        {
            Check.Group("TargetProcess: this process", ThisProcess);
            Check.Group("TargetProcess: a child process", ChildProcess);
        }

        private static void ThisProcess()
        {
            var self = Process.GetCurrentProcess();
            var settings = new BufferAllocatorSettings { MinAddress = (nuint)0, MaxAddress = (nuint)int.MaxValue, Size = 4096 };
            Check.Equal(self.Id, settings.TargetProcess.Id, "TargetProcess defaults to this process");
            Check.Equal(8, settings.RetryCount, "RetryCount defaults to the original's 8");
            settings.TargetProcess = self;
            using (var allocation = Buffers.AllocatePrivateMemory(settings))
            {
                Check.Equal(self.Id, allocation.ProcessId, "TargetProcess = this process keeps the pages here");
                Memory.Write(allocation.BaseAddress, new byte[] { 0x5a });
                Check.Equal((byte)0x5a, allocation.Read((nuint)0, 1)[0], "... where they are read and written directly");
            }
        }

        private static void ChildProcess()
        {
            // `cat` with a pipe for input waits until the pipe is closed.
            var child = Process.Start(new ProcessStartInfo("cat")
            {
                UseShellExecute = false,
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
            });
            try
            {
                // Process.Start can return between fork and exec; pages mapped
                // then would vanish with the old image. A line echoed back
                // proves `cat` itself is running.
                child.StandardInput.WriteLine("ready");
                child.StandardInput.Flush();
                Check.Equal("ready", child.StandardOutput.ReadLine(), "the child runs (it echoed a line)");

                var settings = new BufferAllocatorSettings()
                {
                    MinAddress = (nuint)0,
                    MaxAddress = (nuint)int.MaxValue,
                    Size = 4096,
                };
                settings.TargetProcess = child;

                PrivateAllocation allocation;
                try
                {
                    allocation = Buffers.AllocatePrivateMemory(settings);
                }
                catch (MemoryBufferAllocationException exception)
                    when (exception.Status == MemoryBuffersStatus.ProcessAccessDenied
                          || exception.Status == MemoryBuffersStatus.ProcessNotInjectable)
                {
                    Check.Skip("TargetProcess: a child process", "this machine refuses ptrace (" + exception.Message + ")");
                    return;
                }

                nuint baseAddress = allocation.BaseAddress;
                Check.Equal(child.Id, allocation.ProcessId, "the pages belong to the child");
                Check.That((ulong)baseAddress + (ulong)allocation.Size - 1 <= int.MaxValue, "the pages lie inside the requested range");
                Check.That(Memory.IsMapped(child.Id, baseAddress), "the child's memory map shows the pages");

                byte[] bytes = Memory.Pattern(64, 77);
                allocation.Write((nuint)100, bytes);
                Check.That(Memory.Same(bytes, allocation.Read((nuint)100, 64)), "bytes written into the child read back");
                var beyond = Check.Throws<MemoryBuffersException>(() => allocation.Write((nuint)((ulong)allocation.Size - 1), new byte[2]),
                    "writing across the end of the child's pages throws");
                if (beyond != null)
                    Check.Equal(MemoryBuffersStatus.DoesNotFit, beyond.Status, "... with DoesNotFit");

                allocation.Dispose();
                Check.That(!Memory.IsMapped(child.Id, baseAddress), "Dispose unmapped the pages in the child");
            }
            finally
            {
                child.StandardInput.Close();
                if (!child.WaitForExit(10000))
                    child.Kill();
                child.Dispose();
            }
        }
    }
}
