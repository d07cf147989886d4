// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The C# bindings' tests, a self-checking program: every check prints one
// line, the last line counts them, and the exit code is 1 if any failed.
// Run from the directory holding the bindings, the test program and the
// native library (see README.md).

using System;

namespace Reloaded.Memory.Buffers.Tests
{
    internal static class Program
    {
        private static int Main()
        {
            Console.WriteLine("Reloaded.Memory.Buffers for C#, on " + Environment.Version + ", "
                + (IntPtr.Size * 8) + "-bit");

            ReadmeExamples.Run();
            AppendAndCodeTests.Run();
            DisposalTests.Run();
            ErrorTests.Run();
            ThreadTests.Run();
            TargetProcessTests.Run();
            TwoCopiesTests.Run();

            Console.WriteLine();
            // The plain summary line CI reads.
            Console.WriteLine("csharp: " + Check.Passed + " passed, " + Check.Failed + " failed, " + Check.Skipped + " skipped");
            return Check.Failed == 0 && Check.Passed > 0 ? 0 : 1;
        }
    }
}
