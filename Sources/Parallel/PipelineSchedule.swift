/// The one-forward-one-backward (1F1B) schedule of PipeDream-Flush / Megatron: stage s of p
/// first runs p−1−s forwards (warm-up), then alternates one forward and one backward, then
/// drains the remaining backwards. At most p−s micro-batches are in flight on stage s, against
/// all of them with fill-drain (GPipe), and the bubble is the same.
package enum PipelineSchedule {
    package enum Op: Equatable, CustomStringConvertible {
        case forward(Int), backward(Int)
        package var description: String {
            switch self { case .forward(let j): "F\(j)"; case .backward(let j): "B\(j)" }
        }
    }

    /// The most micro-batches whose activations stage `s` holds at once under `oneFOneB`.
    package static func mostInFlight(stage s: Int, stages p: Int, micros n: Int) -> Int { Swift.min(p - s, n) }

    /// The ops of `stage` (of `stages`) over `micros` local micro-batches, in order.
    package static func oneFOneB(stage s: Int, stages p: Int, micros n: Int) -> [Op] {
        let warmup = Swift.min(p - 1 - s, n)
        var ops: [Op] = (0..<warmup).map { .forward($0) }
        var b = 0
        for f in warmup..<n {
            ops.append(.forward(f))
            ops.append(.backward(b))
            b += 1
        }
        while b < n { ops.append(.backward(b)); b += 1 }
        return ops
    }
}
