import Foundation

/// Memory figures of this process from /proc (Linux), in bytes.
package enum ProcessStats {
    /// Peak resident set size (VmHWM).
    package static var peakRSS: Int { field("VmHWM") }
    /// `peakRSS` in MiB, as metrics.jsonl and the benchmarks print it.
    package static var peakRSSMiB: Double { Double(peakRSS) / 1_048_576 }
    /// Current resident set size (VmRSS).
    package static var currentRSS: Int { field("VmRSS") }

    static func field(_ name: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
}

/// JSON for command output (bench, plan, eval): sorted keys, so runs diff cleanly. A
/// non-finite number (a diverged loss) is written as the string "NaN" or "Infinity" rather
/// than failing the command.
package func jsonString<T: Encodable>(_ value: T) -> String {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    return String(decoding: try! enc.encode(value), as: UTF8.self)
}
