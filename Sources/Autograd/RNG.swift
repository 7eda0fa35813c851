import Foundation

/// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). A value is a pure
/// function of (seed, stream, index): the same triple gives the same number whatever was drawn
/// before, on whichever rank, so sampling, init, data order and dropping do not depend on the
/// parallel layout or the call order.
package struct Philox: Sendable, Hashable {
    package let seed: UInt64
    package let stream: UInt64

    package init(seed: UInt64, stream: UInt64 = 0) {
        self.seed = seed
        self.stream = stream
    }

    /// Streams named by purpose, so that call sites cannot collide by accident.
    package init(seed: UInt64, purpose: String, _ parts: UInt64...) {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the purpose and parts
        for byte in purpose.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 }
        for p in parts { for i in 0..<8 { h = (h ^ ((p >> (8 * UInt64(i))) & 0xff)) &* 0x100_0000_01b3 } }
        self.init(seed: seed, stream: h)
    }

    /// The raw Philox4x32-10 block for (counter, key).
    package static func block(counter: (UInt32, UInt32, UInt32, UInt32), key: (UInt32, UInt32)) -> (UInt32, UInt32, UInt32, UInt32) {
        var (c0, c1, c2, c3) = counter
        var (k0, k1) = key
        for round in 0..<10 {
            if round > 0 {
                k0 &+= 0x9E37_79B9
                k1 &+= 0xBB67_AE85
            }
            let p0 = UInt64(0xD251_1F53) * UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) * UInt64(c2)
            let n0 = UInt32(truncatingIfNeeded: p1 >> 32) ^ c1 ^ k0
            let n1 = UInt32(truncatingIfNeeded: p1)
            let n2 = UInt32(truncatingIfNeeded: p0 >> 32) ^ c3 ^ k1
            let n3 = UInt32(truncatingIfNeeded: p0)
            (c0, c1, c2, c3) = (n0, n1, n2, n3)
        }
        return (c0, c1, c2, c3)
    }

    /// Four 32-bit words for `index`.
    @inline(__always)
    package func words(_ index: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        Philox.block(counter: (UInt32(truncatingIfNeeded: index), UInt32(truncatingIfNeeded: index >> 32),
                               UInt32(truncatingIfNeeded: stream), UInt32(truncatingIfNeeded: stream >> 32)),
                     key: (UInt32(truncatingIfNeeded: seed), UInt32(truncatingIfNeeded: seed >> 32)))
    }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always)
    package func uniform(_ index: UInt64) -> Float {
        Float(words(index).0 >> 8) * (1.0 / 16_777_216.0)
    }

    /// A 64-bit integer for `index` (for shuffles and choices).
    @inline(__always)
    package func uint64(_ index: UInt64) -> UInt64 {
        let w = words(index)
        return UInt64(w.0) | (UInt64(w.1) << 32)
    }

    /// Standard normal by Box–Muller on two words of the same block.
    @inline(__always)
    package func normal(_ index: UInt64) -> Float {
        let w = words(index)
        // u1 in (0, 1] so the log is finite.
        let u1 = (Double(w.0) + 1) * (1.0 / 4_294_967_296.0)
        let u2 = Double(w.1) * (1.0 / 4_294_967_296.0)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    /// Fills `t` (contiguous) with uniform [low, high) values for indices start, start+1, ...
    package func fillUniform(_ t: Tensor, low: Float = 0, high: Float = 1, start: UInt64 = 0) {
        precondition(t.isContiguous, "fillUniform: needs a contiguous tensor")
        let p = t.data
        parallelFor(t.count, grain: 4096) { r in
            for i in r { p[i] = low + (high - low) * uniform(start + UInt64(i)) }
        }
    }

    /// Fills `t` (contiguous) with normal(mean, std) values for indices start, start+1, ...
    package func fillNormal(_ t: Tensor, mean: Float = 0, std: Float = 1, start: UInt64 = 0) {
        precondition(t.isContiguous, "fillNormal: needs a contiguous tensor")
        let p = t.data
        parallelFor(t.count, grain: 4096) { r in
            for i in r { p[i] = mean + std * normal(start + UInt64(i)) }
        }
    }
}

extension Tensor {
    package static func randn(_ shape: [Int], std: Float = 1, rng: Philox, requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitialized: shape)
        rng.fillNormal(t, std: std)
        t.requiresGrad = requiresGrad
        return t
    }

    package static func rand(_ shape: [Int], low: Float = 0, high: Float = 1, rng: Philox) -> Tensor {
        let t = Tensor(uninitialized: shape)
        rng.fillUniform(t, low: low, high: high)
        return t
    }
}
