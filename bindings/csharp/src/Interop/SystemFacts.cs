// SPDX-License-Identifier: MIT OR Apache-2.0

#if MONO_MCS
using nuint = System.UIntPtr;
#endif

using System;
using System.Diagnostics;
using System.Threading;

namespace Reloaded.Memory.Buffers.Interop
{
    /// <summary>Facts about this process that never change, asked of the native library once.</summary>
    internal static class SystemFacts
    {
        private static long s_highestUserAddress; // 0 until asked
        private static long s_allocationGranularity;
        private static Process s_thisProcess;

        /// <summary>The highest address a user-space mapping can reach (inclusive).</summary>
        internal static nuint HighestUserAddress
        {
            get
            {
                long known = Interlocked.Read(ref s_highestUserAddress);
                if (known == 0)
                {
                    NativeFailure.Check(NativeMethods.memory_buffers_highest_user_address(out UIntPtr address));
                    known = (long)(ulong)address;
                    Interlocked.Exchange(ref s_highestUserAddress, known);
                }
                return (nuint)(ulong)known;
            }
        }

        /// <summary>The unit in which memory is mapped (the page size on Linux, 64 KiB on Windows).</summary>
        internal static ulong AllocationGranularity
        {
            get
            {
                long known = Interlocked.Read(ref s_allocationGranularity);
                if (known == 0)
                {
                    NativeFailure.Check(NativeMethods.memory_buffers_allocation_granularity(out UIntPtr granularity));
                    known = (long)(ulong)granularity;
                    Interlocked.Exchange(ref s_allocationGranularity, known);
                }
                return (ulong)known;
            }
        }

        /// <summary>This process, as the original library's default target.</summary>
        internal static Process ThisProcess
        {
            get
            {
                Process known = Volatile.Read(ref s_thisProcess);
                if (known != null)
                    return known;
                var current = Process.GetCurrentProcess();
                // A thread that loses the race disposes its own copy.
                known = Interlocked.CompareExchange(ref s_thisProcess, current, null);
                if (known == null)
                    return current;
                current.Dispose();
                return known;
            }
        }

        internal static bool IsWindows => Environment.OSVersion.Platform == PlatformID.Win32NT;
    }
}
