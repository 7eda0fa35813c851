/// Rotary position embedding in the rotate-half layout (the one DeepSeek's and Llama's code
/// apply after de-interleaving): for x = [x1, x2] split at D/2,
///   y1 = x1·cos − x2·sin,   y2 = x2·cos + x1·sin.
/// With `interleaved`, the input pairs are (x[2j], x[2j+1]) as DeepSeek's released checkpoints
/// lay out the rope dimensions; the output is in the rotate-half layout, as DeepSeek's code
/// produces it after its de-interleaving view.

extension Tensor {
    /// `self` is [..., T, H, D]; `cos` and `sin` are [T, R/2] tables for the T positions. The
    /// rotation applies to the last R = D − `keep` dimensions of each head; the first `keep` pass
    /// through (MLA's queries: [q_nope | q_pe] rotated in one pass, with no split or concat).
    package func rotaryEmbedding(cos: Tensor, sin: Tensor, interleaved: Bool = false, keep: Int = 0) -> Tensor {
        guard rank >= 3 else { shapeFailure("rotaryEmbedding", "input \(shape) needs [..., T, H, D]") }
        let t = shape[rank - 3], h = shape[rank - 2], d = shape[rank - 1], half = (d - keep) / 2
        guard keep >= 0, keep <= d, (d - keep) % 2 == 0, cos.shape == [t, half], sin.shape == [t, half] else {
            shapeFailure("rotaryEmbedding", "input \(shape) rotating its last \(d - keep) dimensions needs cos/sin tables of shape [\(t), \((d - keep) / 2)], got \(cos.shape) and \(sin.shape)")
        }
        let src = contiguousNoGrad(), c = cos.contiguousNoGrad(), s = sin.contiguousNoGrad()
        let out = Tensor(uninitialized: shape)
        Tensor.rotate(src.data, out.data, c.data, s.data, rows: count / d, t: t, h: h, keep: keep, half: half, inverse: false,
                      interleavedIn: interleaved, interleavedOut: false)
        return record(out, inputs: [self]) { g in
            let gc = g.contiguousNoGrad()
            let dx = Tensor(uninitialized: src.shape)
            // The rotation is orthogonal: its gradient is the rotation by −θ.
            Tensor.rotate(gc.data, dx.data, c.data, s.data, rows: src.count / d, t: t, h: h, keep: keep, half: half, inverse: true,
                          interleavedIn: false, interleavedOut: interleaved)
            withExtendedLifetime((gc, c, s)) {}
            return [dx]
        }
    }

    /// Rows of `keep + 2·half` values: the first `keep` copied, the rest rotated.
    static func rotate(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                       _ c: UnsafeMutablePointer<Float>, _ s: UnsafeMutablePointer<Float>,
                       rows: Int, t: Int, h: Int, keep: Int = 0, half: Int, inverse: Bool, interleavedIn: Bool, interleavedOut: Bool) {
        let sign: Float = inverse ? -1 : 1
        // Element j of each half lives at (j, half + j) in the rotate-half layout and at
        // (2j, 2j + 1) in the interleaved one.
        let inA = interleavedIn ? 2 : 1, inB = interleavedIn ? 1 : half
        let outA = interleavedOut ? 2 : 1, outB = interleavedOut ? 1 : half
        let width = keep + 2 * half
        parallelFor(rows, grain: Swift.max(1, 4096 / Swift.max(width, 1))) { r in
            for row in r {
                let pos = (row / h) % t
                if keep > 0 { (y + row * width).update(from: x + row * width, count: keep) }
                let b = row * width + keep, tb = pos * half
                for j in 0..<half {
                    let x1 = x[b + inA * j], x2 = x[b + inA * j + inB]
                    let cj = c[tb + j], sj = s[tb + j] * sign
                    y[b + outA * j] = x1 * cj - x2 * sj
                    y[b + outA * j + outB] = x2 * cj + x1 * sj
                }
            }
        }
    }
}
