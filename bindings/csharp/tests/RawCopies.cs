// SPDX-License-Identifier: MIT OR Apache-2.0
//
// Two copies of the native library in this process, called directly:
// `memory_buffers` is the file the C# library loads, `memory_buffers_second`
// a copy of the same file under another name, which the dynamic loader loads
// as a separate instance with its own handle tables. The test script puts
// both next to the test program.

using nuint = System.UIntPtr;

using System;
using System.Runtime.InteropServices;

namespace Reloaded.Memory.Buffers.Tests
{
    [StructLayout(LayoutKind.Sequential)]
    internal struct RawSearchSettings
    {
        public UIntPtr MinAddress;
        public UIntPtr MaxAddress;
        public UIntPtr Size;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct RawLocatorKind
    {
        public byte Shared; // C `bool`
        public int PrivateReason;
        public int OsError;
    }

    /// <summary>The functions of one copy, so both copies go through the same test code.</summary>
    internal interface IRawCopy
    {
        string Name { get; }
        uint VersionNumber();
        int LocatorKind(out RawLocatorKind kind);
        int LocatorAddress(out UIntPtr address);
        int GetBuffer(ref RawSearchSettings settings, out IntPtr buffer);
        int BaseAddress(IntPtr buffer, out UIntPtr address);
        int Size(IntPtr buffer, out UIntPtr size);
        int Position(IntPtr buffer, out UIntPtr position);
        int Append(IntPtr buffer, byte[] bytes, out UIntPtr address);
        int Release(ref IntPtr buffer);
    }

    internal sealed class FirstCopy : IRawCopy
    {
        private const string Library = "memory_buffers";
        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        [DllImport(Library, CallingConvention = Cdecl)] private static extern uint memory_buffers_version_number();
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_locator_kind(out RawLocatorKind kind);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_locator_address(out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_get_buffer(ref RawSearchSettings settings, out IntPtr buffer);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_base_address(IntPtr buffer, out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_size(IntPtr buffer, out UIntPtr size);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_position(IntPtr buffer, out UIntPtr position);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_append_bytes(IntPtr buffer, byte[] bytes, UIntPtr length, out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_release_buffer(ref IntPtr buffer);

        public string Name => "first copy (memory_buffers)";
        public uint VersionNumber() => memory_buffers_version_number();
        public int LocatorKind(out RawLocatorKind kind) => memory_buffers_locator_kind(out kind);
        public int LocatorAddress(out UIntPtr address) => memory_buffers_locator_address(out address);
        public int GetBuffer(ref RawSearchSettings settings, out IntPtr buffer) => memory_buffers_get_buffer(ref settings, out buffer);
        public int BaseAddress(IntPtr buffer, out UIntPtr address) => memory_buffers_buffer_base_address(buffer, out address);
        public int Size(IntPtr buffer, out UIntPtr size) => memory_buffers_buffer_size(buffer, out size);
        public int Position(IntPtr buffer, out UIntPtr position) => memory_buffers_buffer_position(buffer, out position);
        public int Append(IntPtr buffer, byte[] bytes, out UIntPtr address) =>
            memory_buffers_buffer_append_bytes(buffer, bytes, (UIntPtr)bytes.Length, out address);
        public int Release(ref IntPtr buffer) => memory_buffers_release_buffer(ref buffer);
    }

    internal sealed class SecondCopy : IRawCopy
    {
        private const string Library = "memory_buffers_second";
        private const CallingConvention Cdecl = CallingConvention.Cdecl;

        [DllImport(Library, CallingConvention = Cdecl)] private static extern uint memory_buffers_version_number();
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_locator_kind(out RawLocatorKind kind);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_locator_address(out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_get_buffer(ref RawSearchSettings settings, out IntPtr buffer);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_base_address(IntPtr buffer, out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_size(IntPtr buffer, out UIntPtr size);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_position(IntPtr buffer, out UIntPtr position);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_buffer_append_bytes(IntPtr buffer, byte[] bytes, UIntPtr length, out UIntPtr address);
        [DllImport(Library, CallingConvention = Cdecl)] private static extern int memory_buffers_release_buffer(ref IntPtr buffer);

        public string Name => "second copy (memory_buffers_second)";
        public uint VersionNumber() => memory_buffers_version_number();
        public int LocatorKind(out RawLocatorKind kind) => memory_buffers_locator_kind(out kind);
        public int LocatorAddress(out UIntPtr address) => memory_buffers_locator_address(out address);
        public int GetBuffer(ref RawSearchSettings settings, out IntPtr buffer) => memory_buffers_get_buffer(ref settings, out buffer);
        public int BaseAddress(IntPtr buffer, out UIntPtr address) => memory_buffers_buffer_base_address(buffer, out address);
        public int Size(IntPtr buffer, out UIntPtr size) => memory_buffers_buffer_size(buffer, out size);
        public int Position(IntPtr buffer, out UIntPtr position) => memory_buffers_buffer_position(buffer, out position);
        public int Append(IntPtr buffer, byte[] bytes, out UIntPtr address) =>
            memory_buffers_buffer_append_bytes(buffer, bytes, (UIntPtr)bytes.Length, out address);
        public int Release(ref IntPtr buffer) => memory_buffers_release_buffer(ref buffer);
    }
}
