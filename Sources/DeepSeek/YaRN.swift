import Foundation
@_exported import FileFormats
import Autograd

/// Rotary tables for MLA's decoupled rope dimensions, with YaRN as DeepSeek's code computes
/// it (docs/design.md §9): frequencies blend interpolated (θ^(−2i/d)/factor) and extrapolated
/// (θ^(−2i/d)) by a linear ramp between the correction dimensions of β_fast and β_slow, and
/// cos/sin are scaled by mscale(factor, mscale)/mscale(factor, mscale_all_dim).
///
/// The reference computes in float32 (inverse frequencies, then position × frequency, then
/// cos/sin); the same roundings are made here so that long positions agree to ~1 ulp.
package struct RotaryTables {
    package let cos: Tensor
    package let sin: Tensor
    package let inverseFrequencies: [Float]

    package init(config c: DeepSeekConfig, positions: Int) {
        let d = c.qkRopeHeadDim, half = d / 2, base = c.ropeTheta
        let extra: [Float] = (0..<half).map { Float(1 / Foundation.pow(base, Double(2 * $0) / Double(d))) }
        var inv = extra
        var scale: Float = 1
        if let r = c.ropeScaling, r.factor > 1 {
            let inter: [Float] = (0..<half).map { Float(1 / (r.factor * Foundation.pow(base, Double(2 * $0) / Double(d)))) }
            func correctionDim(_ rotations: Double) -> Double {
                Double(d) * Foundation.log(Double(r.originalMaxPositionEmbeddings) / (rotations * 2 * Double.pi)) / (2 * Foundation.log(base))
            }
            let low = Swift.max(Foundation.floor(correctionDim(r.betaFast)), 0)
            let high = Swift.min(Foundation.ceil(correctionDim(r.betaSlow)), Double(d - 1))
            let span = low == high ? 0.001 : high - low
            inv = (0..<half).map { i in
                let ramp = Float(Swift.min(Swift.max((Double(i) - low) / span, 0), 1))
                // inv_freq_mask = 1 − ramp: extrapolate where the mask is 1 (high frequencies).
                return inter[i] * ramp + extra[i] * (1 - ramp)
            }
            scale = Float(yarnMscale(factor: r.factor, mscale: r.mscale) / yarnMscale(factor: r.factor, mscale: r.mscaleAllDim))
        }
        inverseFrequencies = inv
        let cosT = Tensor(uninitialized: [positions, half]), sinT = Tensor(uninitialized: [positions, half])
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inv[i]  // float32 product, as the reference
                cosT.data[p * half + i] = Float(Foundation.cos(Double(angle))) * scale
                sinT.data[p * half + i] = Float(Foundation.sin(Double(angle))) * scale
            }
        }
        cos = cosT
        sin = sinT
    }
}
