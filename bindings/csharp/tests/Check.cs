// SPDX-License-Identifier: MIT OR Apache-2.0
//
// A minimal self-checking harness: each check prints one line, failures are
// counted, and the program's exit code says whether any failed.

using nuint = System.UIntPtr;

using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class Check
    {
        private static readonly object Gate = new object();
        internal static int Passed, Failed, Skipped;

        internal static void That(bool condition, string what)
        {
            lock (Gate)
            {
                if (condition)
                {
                    Passed++;
                    Console.WriteLine("ok      " + what);
                }
                else
                {
                    Failed++;
                    Console.WriteLine("FAILED  " + what);
                }
            }
        }

        internal static void Equal<T>(T expected, T actual, string what)
        {
            bool same = EqualityComparer<T>.Default.Equals(expected, actual);
            That(same, same ? what : what + ": expected " + Show(expected) + ", got " + Show(actual));
        }

        /// <summary>Runs <paramref name="action"/> and checks that it throws exactly <typeparamref name="TException"/>.</summary>
        internal static TException Throws<TException>(Action action, string what) where TException : Exception
        {
            try
            {
                action();
            }
            catch (Exception exception)
            {
                bool right = exception.GetType() == typeof(TException);
                That(right, right ? what : what + ": threw " + exception.GetType().Name + ": " + exception.Message);
                return exception as TException;
            }
            That(false, what + ": nothing was thrown");
            return null;
        }

        internal static void NoThrow(Action action, string what)
        {
            try
            {
                action();
                That(true, what);
            }
            catch (Exception exception)
            {
                That(false, what + ": threw " + exception.GetType().Name + ": " + exception.Message);
            }
        }

        internal static void Skip(string what, string why)
        {
            lock (Gate)
            {
                Skipped++;
                Console.WriteLine("SKIPPED " + what + ": " + why);
            }
        }

        /// <summary>Runs one group of checks; an unexpected exception fails the group, and the rest still run.</summary>
        internal static void Group(string name, Action body)
        {
            Console.WriteLine();
            Console.WriteLine("--- " + name);
            try
            {
                body();
            }
            catch (Exception exception)
            {
                That(false, name + ": unexpected " + exception);
            }
        }

        private static string Show<T>(T value)
        {
            // Boxed first: mcs emits invalid IL for a type pattern on a value of
            // a type parameter (`value is UIntPtr address`).
            object boxed = value;
            if (boxed is UIntPtr)
                return Hex((UIntPtr)boxed);
            return boxed == null ? "null" : boxed.ToString();
        }

        internal static string Hex(nuint value) => "0x" + ((ulong)value).ToString("x");
    }

    /// <summary>Raw memory, for checking what the library wrote where.</summary>
    internal static class Memory
    {
        internal static byte[] Read(nuint address, int length)
        {
            var bytes = new byte[length];
            Marshal.Copy((IntPtr)(long)(ulong)address, bytes, 0, length);
            return bytes;
        }

        internal static void Write(nuint address, byte[] bytes) =>
            Marshal.Copy(bytes, 0, (IntPtr)(long)(ulong)address, bytes.Length);

        internal static bool Same(byte[] left, byte[] right)
        {
            if (left.Length != right.Length)
                return false;
            for (int i = 0; i < left.Length; i++)
                if (left[i] != right[i])
                    return false;
            return true;
        }

        internal static nuint Add(nuint address, ulong offset) => (nuint)((ulong)address + offset);

        internal static byte[] Pattern(int length, int seed)
        {
            var bytes = new byte[length];
            for (int i = 0; i < length; i++)
                bytes[i] = (byte)(seed * 31 + i * 7 + 1);
            return bytes;
        }

        /// <summary>Whether any mapping of process <paramref name="processId"/> covers <paramref name="address"/>.</summary>
        internal static bool IsMapped(int processId, nuint address)
        {
            ulong target = (ulong)address;
            foreach (string line in System.IO.File.ReadAllLines("/proc/" + processId + "/maps"))
            {
                int dash = line.IndexOf('-');
                int space = line.IndexOf(' ');
                ulong start = Convert.ToUInt64(line.Substring(0, dash), 16);
                ulong end = Convert.ToUInt64(line.Substring(dash + 1, space - dash - 1), 16);
                if (target >= start && target < end)
                    return true;
            }
            return false;
        }
    }
}
