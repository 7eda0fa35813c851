import Autograd

/// The rows an expert layer sends, in send order (by expert, each expert's assignments in
/// order), with each row's token and routing slot, and each token's rows in that order.
///
/// Gathering the rows and adding the experts' results back to their tokens run over the
/// threads: a row, or a token, is one worker's, and a token's contributions are added in send
/// order, as a serial loop would — the same bits. Serial, this work keeps one core busy while
/// the other waits (docs/benchmarks.md).
struct SendRows {
    let token: [Int], slot: [Int]
    /// Token t's rows are rowsOfToken[first[t] ..< first[t + 1]], in increasing order.
    let first: [Int], rowsOfToken: [Int]

    var count: Int { token.count }

    init(_ assignments: [[(token: Int, slot: Int)]], tokens n: Int) {
        var token: [Int] = [], slot: [Int] = []
        for list in assignments {
            for a in list {
                token.append(a.token)
                slot.append(a.slot)
            }
        }
        var first = [Int](repeating: 0, count: n + 1)
        for t in token { first[t + 1] += 1 }
        for i in 0..<n { first[i + 1] += first[i] }
        var next = first, rows = [Int](repeating: 0, count: token.count)
        for (r, t) in token.enumerated() {
            rows[next[t]] = r
            next[t] += 1
        }
        self.token = token
        self.slot = slot
        self.first = first
        rowsOfToken = rows
    }

    /// Row r of `out` ← row token[r] of `x` (rows `width` apart).
    func gather(_ x: UnsafePointer<Float>, width d: Int, into out: UnsafeMutablePointer<Float>) {
        parallelFor(count, grain: 256) { range in
            for r in range { (out + r * d).update(from: x + token[r] * d, count: d) }
        }
    }

    /// Row t of `out` += each of token t's rows of `src` in send order, times its routing
    /// weight `weights[slot]` (nil: unweighted).
    func combine(_ src: UnsafePointer<Float>, width d: Int, weights w: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
        parallelFor(first.count - 1, grain: 128) { range in
            for t in range {
                let dst = out + t * d
                for i in first[t]..<first[t + 1] {
                    let r = rowsOfToken[i], s = src + r * d
                    if let w {
                        let wr = w[slot[r]]
                        for j in 0..<d { dst[j] += wr * s[j] }
                    } else {
                        for j in 0..<d { dst[j] += s[j] }
                    }
                }
            }
        }
    }
}
