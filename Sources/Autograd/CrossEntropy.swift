import Foundation

/// Fused softmax cross-entropy over the last axis with an ignore mask.

/// Targets equal to this are not counted (the Hugging Face / PyTorch convention).
package let ignoreIndex = -100

extension Tensor {
    /// Mean over counted rows of −log softmax(logits)[target]. `logits` is [..., V] and
    /// `targets` has one entry per row. Returns 0 (with a zero gradient) when no row counts.
    package func crossEntropy(targets: [Int], ignoring ignored: Int = ignoreIndex) -> Tensor {
        let (rows, v, src) = lastAxisRows(op: "crossEntropy")
        guard targets.count == rows else {
            shapeFailure("crossEntropy", "\(targets.count) targets for logits \(shape) (\(rows) rows)")
        }
        for t in targets where t != ignored && (t < 0 || t >= v) {
            shapeFailure("crossEntropy", "target \(t) is outside the vocabulary of \(v) (logits \(shape))")
        }
        let x = src.data
        var lse = [Float](repeating: 0, count: rows)
        var losses = [Double](repeating: 0, count: rows)
        let chunks = Swift.max(1, Threads.count)
        let scratch = Storage(uninitialized: chunks * v)
        lse.withUnsafeMutableBufferPointer { l in
            losses.withUnsafeMutableBufferPointer { lp in
                let lb = l.baseAddress!, lpb = lp.baseAddress!
                DispatchQueueConcurrent.run(Swift.min(chunks, Swift.max(rows, 1))) { c in
                    let n = Swift.min(chunks, Swift.max(rows, 1))
                    for row in (rows * c / n)..<(rows * (c + 1) / n) where targets[row] != ignored {
                        let s = logSumExp(x + row * v, v, scratch: scratch.data + c * v)
                        lb[row] = s
                        lpb[row] = Double(s - x[row * v + targets[row]])
                    }
                }
            }
        }
        let counted = targets.reduce(0) { $0 + ($1 == ignored ? 0 : 1) }
        let total = losses.reduce(0, +)
        let out = Tensor(scalar: counted == 0 ? 0 : Float(total / Double(counted)))
        return record(out, inputs: [self]) { g in
            let scale = counted == 0 ? 0 : g.item / Float(counted)
            let dx = Tensor(uninitialized: src.shape)
            let d = dx.data
            parallelFor(rows, grain: Swift.max(1, 8192 / Swift.max(v, 1))) { r in
                for row in r {
                    let b = row * v
                    if targets[row] == ignored {
                        d.advanced(by: b).update(repeating: 0, count: v)
                        continue
                    }
                    let s = lse[row]
                    for j in 0..<v { d[b + j] = fastExp(x[b + j] - s) * scale }
                    d[b + targets[row]] -= scale
                }
            }
            return [dx]
        }
    }
}
