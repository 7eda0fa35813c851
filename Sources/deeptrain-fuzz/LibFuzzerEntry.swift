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
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = data.map { Data(bytes: $0, count: size) } ?? Data()
    fuzzTarget.run(input, scratch: fuzzScratch)
    return 0
}
#endif
