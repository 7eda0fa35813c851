import Foundation

/// Byte-level mutations in the manner of libFuzzer's: flips, interesting values, inserted,
/// deleted and repeated runs, splices of two inputs, and tokens of the target's syntax.
struct Mutator {
    var state: UInt64
    let dictionary: [[UInt8]]
    let maxLength: Int

    mutating func next() -> UInt64 {
        // SplitMix64: reproducible from --seed.
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(next() % UInt64(n)) }

    /// One to four mutations of `input`, spliced now and then with `other`.
    mutating func mutate(_ input: [UInt8], other: [UInt8]) -> [UInt8] {
        var b = input
        for _ in 0...below(4) { b = mutateOnce(b, other: other) }
        return b.count > maxLength ? Array(b.prefix(maxLength)) : b
    }

    mutating func mutateOnce(_ input: [UInt8], other: [UInt8]) -> [UInt8] {
        var b = input
        let at = below(b.count + 1)
        switch below(9) {
        case 0 where !b.isEmpty: b[below(b.count)] ^= UInt8(1 << below(8))
        case 1 where !b.isEmpty: b[below(b.count)] = [0, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x22, 0x7B][below(8)]
        case 2: b.insert(contentsOf: (0..<(1 + below(8))).map { _ in UInt8(truncatingIfNeeded: next()) }, at: at)
        case 3 where !b.isEmpty:
            let n = 1 + below(Swift.min(16, b.count - at + 1))
            b.removeSubrange(at..<Swift.min(b.count, at + n))
        case 4 where !b.isEmpty:
            // A run repeated: nesting and long inputs, where parsers recurse or loop.
            let start = below(b.count), n = 1 + below(Swift.min(32, b.count - start))
            let run = Array(b[start..<(start + n)])
            for _ in 0..<(1 + below(64)) { b.insert(contentsOf: run, at: start) }
        case 5, 6 where !dictionary.isEmpty: b.insert(contentsOf: dictionary[below(dictionary.count)], at: at)
        case 7 where !other.isEmpty:
            let cut = below(other.count)
            b = Array(b.prefix(at)) + Array(other[cut...])
        case 8:
            // A decimal number replaced by an extreme one (sizes, counts, offsets).
            let extremes = ["0", "-1", "9223372036854775807", "-9223372036854775808", "4294967296", "1e309", "2147483648", "65536"]
            b.insert(contentsOf: Array(extremes[below(extremes.count)].utf8), at: at)
        default: break
        }
        return b
    }
}
