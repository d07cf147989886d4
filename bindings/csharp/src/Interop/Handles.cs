// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The library's two kinds of handle as SafeHandles. A SafeHandle gives
// what a handle-based C interface needs from managed code: a finalizer that
// releases a handle its owner forgot, a Dispose that runs at most once, and a
// reference count that defers the release while another thread is inside a
// call with the handle, so a handle is never released under a running call
// and never passed to the library after its release.

using System;
using System.Runtime.InteropServices;

namespace Reloaded.Memory.Buffers.Interop
{
    /// <summary>A <c>MemoryBuffersLockedBuffer *</c>: exclusive use of one shared buffer.</summary>
    internal sealed class LockedBufferHandle : SafeHandle
    {
        // Called by the marshaller for the `out` parameter of the get functions.
        public LockedBufferHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            // The release sets the variable it is given to NULL; a copy is
            // given so that `handle` keeps its value for SafeHandle's own
            // bookkeeping.
            IntPtr released = handle;
            return NativeMethods.memory_buffers_release_buffer(ref released) == (int)Exceptions.MemoryBuffersStatus.Ok;
        }
    }

    /// <summary>A <c>MemoryBuffersPrivateAllocation *</c>: pages owned by the caller.</summary>
    internal sealed class PrivateAllocationHandle : SafeHandle
    {
        public PrivateAllocationHandle() : base(IntPtr.Zero, true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            IntPtr released = handle;
            return NativeMethods.memory_buffers_release_private_allocation(ref released) == (int)Exceptions.MemoryBuffersStatus.Ok;
        }
    }
}
