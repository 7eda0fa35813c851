import Foundation
import Autograd

/// cos/sin tables [positions, dim/2] for rotary embedding with base θ:
/// angle(p, i) = p · θ^(−2i/dim), computed in Float64 before rounding.
package func rotaryTables(positions: Int, dim: Int, theta: Double, inverseFrequencies: [Double]? = nil) -> (cos: Tensor, sin: Tensor) {
    let half = dim / 2
    let invFreq = inverseFrequencies ?? (0..<half).map { Foundation.pow(theta, -2 * Double($0) / Double(dim)) }
    precondition(invFreq.count == half, "rotaryTables: \(invFreq.count) frequencies for dim \(dim)")
    let c = Tensor(uninitialized: [positions, half]), s = Tensor(uninitialized: [positions, half])
    for p in 0..<positions {
        for i in 0..<half {
            let a = Double(p) * invFreq[i]
            c.data[p * half + i] = Float(Foundation.cos(a))
            s.data[p * half + i] = Float(Foundation.sin(a))
        }
    }
    return (c, s)
}
