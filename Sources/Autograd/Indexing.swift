/// Row selection and scatter-add along axis 0 (embeddings, sending tokens to experts and
/// back), and gather along the last axis (picking per-token values such as log-probabilities).

extension Tensor {
    /// Rows `indices` of `self` ([N, ...] → [indices.count, ...]). Backward scatter-adds.
    package func indexSelect(_ indices: [Int]) -> Tensor {
        guard rank >= 1 else { shapeFailure("indexSelect", "needs at least one axis, got a scalar") }
        let n = shape[0], row = count / Swift.max(n, 1)
        for i in indices where i < 0 || i >= n {
            shapeFailure("indexSelect", "index \(i) is outside axis 0 of shape \(shape)")
        }
        let src = contiguousNoGrad()
        let out = Tensor(uninitialized: [indices.count] + shape.dropFirst())
        copyRows(src.data, indices, width: row, into: out.data)
        let inShape = shape
        return record(out, inputs: [self]) { g in [g.scatterAdd(indices, rows: inShape[0])] }
    }

    /// A [rows, ...] tensor of zeros with row `indices[i]` += self[i]. Duplicate indices add up
    /// in index order, so the result does not depend on threads.
    package func scatterAdd(_ indices: [Int], rows: Int) -> Tensor {
        guard rank >= 1, shape[0] == indices.count else {
            shapeFailure("scatterAdd", "\(indices.count) indices for source rows of shape \(shape)")
        }
        for i in indices where i < 0 || i >= rows {
            shapeFailure("scatterAdd", "index \(i) is outside \(rows) destination rows")
        }
        let row = rank == 1 ? 1 : shape.dropFirst().reduce(1, *)
        let src = contiguousNoGrad()
        let out = Tensor(zeros: [rows] + shape.dropFirst())
        let x = src.data, o = out.data
        // Parallel over the row's columns keeps every destination's additions in index order.
        parallelFor(row, grain: Swift.max(1, 16_384 / Swift.max(indices.count, 1))) { cols in
            for (i, dst) in indices.enumerated() {
                let s = x + i * row, d = o + dst * row
                for j in cols { d[j] += s[j] }
            }
        }
        return record(out, inputs: [self]) { g in [g.indexSelect(indices)] }
    }

    /// torch.gather along the last axis: `self` is [..., V], `indices` holds K entries per row
    /// (row-major), the result is [..., K].
    package func gatherLast(_ indices: [Int], k: Int) -> Tensor {
        let (rows, v, src) = lastAxisRows(op: "gatherLast")
        guard indices.count == rows * k else {
            shapeFailure("gatherLast", "\(indices.count) indices for \(rows) rows × \(k) of input \(shape)")
        }
        for i in indices where i < 0 || i >= v {
            shapeFailure("gatherLast", "index \(i) is outside the last axis of shape \(shape)")
        }
        let out = Tensor(uninitialized: Array(shape.dropLast()) + [k])
        let x = src.data, o = out.data
        for r in 0..<rows { for j in 0..<k { o[r * k + j] = x[r * v + indices[r * k + j]] } }
        let inShape = shape
        return record(out, inputs: [self]) { g in
            let gc = g.contiguousNoGrad()
            let dx = Tensor(zeros: inShape)
            for r in 0..<rows { for j in 0..<k { dx.data[r * v + indices[r * k + j]] += gc.data[r * k + j] } }
            return [dx]
        }
    }

    /// Indices of the `k` largest values of each row of the last axis, largest first (ties:
    /// lower index first). Not differentiable: take values with `gatherLast`.
    package func topK(_ k: Int) -> [Int] {
        let (rows, v, src) = lastAxisRows(op: "topK")
        guard k >= 0 && k <= v else { shapeFailure("topK", "k = \(k) for a last axis of \(v) in shape \(shape)") }
        if k == 0 { return [] }
        let x = src.data
        var result = [Int](repeating: 0, count: rows * k)
        var idx = [Int](repeating: 0, count: k)
        for r in 0..<rows {
            let b = r * v
            // Insertion into a sorted list of k: k is small (experts per token, groups).
            var n = 0
            for j in 0..<v {
                let val = x[b + j]
                if n == k && !(val > x[b + idx[k - 1]]) { continue }
                var p = n < k ? n : k - 1
                while p > 0 && val > x[b + idx[p - 1]] {
                    idx[p] = idx[p - 1]
                    p -= 1
                }
                idx[p] = j
                if n < k { n += 1 }
            }
            for j in 0..<k { result[r * k + j] = idx[j] }
        }
        return result
    }
}

/// Row i of `out` ← row `indices[i]` of `source`, rows `width` floats apart, over the threads.
package func copyRows(_ source: UnsafePointer<Float>, _ indices: [Int], width: Int, into out: UnsafeMutablePointer<Float>) {
    parallelFor(indices.count, grain: Swift.max(1, 16_384 / Swift.max(width, 1))) { r in
        for i in r { (out + i * width).update(from: source + indices[i] * width, count: width) }
    }
}
