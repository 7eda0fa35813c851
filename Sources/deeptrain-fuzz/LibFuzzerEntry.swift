#if LIBFUZZER
import Foundation
import FuzzTargets

/// Built with `-sanitize=fuzzer,address -DLIBFUZZER` (scripts/fuzz), libFuzzer drives the same
/// targets with coverage feedback; the target comes from DEEPTRAIN_FUZZ_TARGET.
nonisolated(unsafe) let fuzzTarget = FuzzTarget(rawValue: ProcessInfo.processInfo.environment["DEEPTRAIN_FUZZ_TARGET"] ?? "") ?? {
    fatalError("set DEEPTRAIN_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue))")
}()
nonisolated(unsafe) let fuzzScratch = try! FuzzScratch()

@_cdecl("LLVMFuzzerTestOneInput")
package func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = data.map { Data(bytes: $0, count: size) } ?? Data()
    fuzzTarget.run(input, scratch: fuzzScratch)
    return 0
}
#endif

#if LIBFUZZER
/// SwiftPM links an executable's entry point as `<module>_main`, so libFuzzer's own `main` is
/// not the one that runs: this one hands control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func runLibFuzzer(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                  _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

@_cdecl("deeptrain_fuzz_main")
package func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var args = argv
    return runLibFuzzer(&count, &args) { data, size in fuzzOneInput(data, size) }
}
#endif
