import Autograd

/// The three auxiliary balance losses of DeepSeek-V2 §2.2.3, over the T tokens of each
/// sequence and averaged over sequences (docs/design.md §9). Each is already multiplied by its α; only
/// the P terms (mean affinities) carry gradient, the f terms (counts) are constants.
package struct BalanceLosses {
    package let expert: Tensor
    package let device: Tensor
    package let communication: Tensor

    package struct Alphas: Sendable, Equatable, Codable {
        package var expert: Double
        package var device: Double
        package var communication: Double
        package init(expert: Double, device: Double, communication: Double) {
            self.expert = expert
            self.device = device
            self.communication = communication
        }
    }

    /// `scores` [B·T, E] softmax affinities; `experts` each token's K experts (row-major);
    /// the E experts sit on `devices` devices in contiguous blocks; each token may reach at
    /// most `devicesPerToken` (M) devices.
    package static func compute(scores: Tensor, experts: [Int], batch b: Int, length t: Int, k: Int,
                               devices d: Int, devicesPerToken m: Int, alphas: Alphas) -> BalanceLosses {
        let e = scores.shape[scores.rank - 1], per = e / d
        let zero = Tensor(scalar: 0)
        if alphas.expert == 0 && alphas.device == 0 && alphas.communication == 0 {
            return BalanceLosses(expert: zero, device: zero, communication: zero)
        }
        // Mean affinity of each expert over each sequence's tokens: P [B, E].
        let p = scores.reshape([b, t, e]).mean(axis: 1)
        var counts = [Float](repeating: 0, count: b * e)
        var reached = [Float](repeating: 0, count: b * d)
        for s in 0..<b {
            for tok in 0..<t {
                var hit = [Bool](repeating: false, count: d)
                for j in 0..<k {
                    let ex = experts[(s * t + tok) * k + j]
                    counts[s * e + ex] += 1
                    hit[ex / per] = true
                }
                for dev in 0..<d where hit[dev] { reached[s * d + dev] += 1 }
            }
        }
        // f_i = N_r/(K·T) · count_i
        let fScale = Float(e) / Float(k * t)
        let f = Tensor(counts.map { $0 * fScale }, shape: [b, e])
        let expert = alphas.expert == 0 ? zero : (f * p).sum() * Float(alphas.expert / Double(b))

        let pDevice = p.reshape([b, d, per]).sum(axis: 2)  // P'_d = P''_d = Σ_{i on d} P_i
        var device = zero
        if alphas.device != 0 {
            let fDevice = f.detached().reshape([b, d, per]).mean(axis: 2)  // f'_d = mean of f_i on d
            device = (fDevice * pDevice).sum() * Float(alphas.device / Double(b))
        }
        var communication = zero
        if alphas.communication != 0 {
            let cScale = Float(d) / Float(m * t)  // f''_d = D/(M·T) · #{t sent to d}
            let fComm = Tensor(reached.map { $0 * cScale }, shape: [b, d])
            communication = (fComm * pDevice).sum() * Float(alphas.communication / Double(b))
        }
        return BalanceLosses(expert: expert, device: device, communication: communication)
    }
}
