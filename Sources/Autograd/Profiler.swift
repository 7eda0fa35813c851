import Foundation

/// Time per op, forward and backward, for finding where a training step goes.
///
/// Switched on by `DEEPTRAIN_PROFILE=1` (or `Profiler.isEnabled = true`). Forward time is
/// attributed to an op as the time since the previous recorded op finished, so the glue
/// between ops is counted with the op that follows it; backward time is each op's closure.
/// Only recorded ops (those whose inputs need gradients) are seen, unless `withoutGradients`
/// (decoding's ops: `bench generate`); a backward's own ops are never counted as forward.
package enum Profiler {
    nonisolated(unsafe) package static var isEnabled = ProcessInfo.processInfo.environment["DEEPTRAIN_PROFILE"] == "1"
    nonisolated(unsafe) static var forward: [String: (Double, Int)] = [:]
    nonisolated(unsafe) static var backward: [String: (Double, Int)] = [:]
    nonisolated(unsafe) static var last = 0.0
    /// Times ops that record no gradient too (set where nothing runs backward: decoding).
    nonisolated(unsafe) package static var withoutGradients = false

    static func clock() -> Double { now() }

    /// Marks the start of a region whose ops should be timed (e.g. the forward pass).
    package static func mark() { last = clock() }

    static func recordForward(_ op: String) {
        let t = clock()
        let e = forward[op, default: (0, 0)]
        forward[op] = (e.0 + t - last, e.1 + 1)
        last = t
    }

    static func recordBackward(_ op: String, _ seconds: Double) {
        let e = backward[op, default: (0, 0)]
        backward[op] = (e.0 + seconds, e.1 + 1)
    }

    package static func reset() {
        forward = [:]
        backward = [:]
        gemmLock.lock()
        gemms = [:]
        gemmLock.unlock()
    }

    /// The projections' and experts' GEMMs by shape (M × N × K, op(A), op(B)): calls, seconds and
    /// FLOPs, for their achieved GFLOP/s against raw sgemm at the same shape (`bench gemm
    /// --shapes`). An expert's token count, which the routing varies, is M or K of its GEMMs
    /// (`tokens`: 0 or 2; a cached sequence length is N or K: 1 or 2): those shapes are keyed
    /// with −1 there and reported with the mean.
    /// Recorded from several threads at once (the experts run on the workers), hence the lock.
    struct GEMMShape: Hashable { let m, n, k: Int; let ta, tb: Bool }
    nonisolated(unsafe) static var gemms: [GEMMShape: (seconds: Double, calls: Int, tokens: Int, flops: Double)] = [:]
    static let gemmLock = NSLock()

    /// Runs `body` (one sgemm of that shape), timing it when profiling (`profiledGEMM`).
    @inline(__always)
    static func gemm(_ m: Int, _ n: Int, _ k: Int, transA: Bool, transB: Bool, tokens: Int? = nil, _ body: () -> Void) {
        guard isEnabled else { return body() }
        let t0 = clock()
        body()
        let dt = clock() - t0
        let key = GEMMShape(m: tokens == 0 ? -1 : m, n: tokens == 1 ? -1 : n, k: tokens == 2 ? -1 : k, ta: transA, tb: transB)
        gemmLock.lock()
        let e = gemms[key, default: (0, 0, 0, 0)]
        gemms[key] = (e.seconds + dt, e.calls + 1, e.tokens + [m, n, k][tokens ?? 0], e.flops + 2 * Double(m * n * k))
        gemmLock.unlock()
    }

    /// A table of the recorded GEMM shapes by total time, per `steps`, with their GFLOP/s.
    package static func gemmReport(steps: Int = 1, digits: Int = 1) -> String {
        gemmLock.lock()
        defer { gemmLock.unlock() }
        var lines = ["gemm (M×N×K:opA:opB)                 calls/step   ms/step   GFLOP/s"]
        let per = Double(Swift.max(steps, 1))
        for (s, e) in gemms.sorted(by: { $0.value.seconds > $1.value.seconds }) {
            let mean = "~\(e.tokens / Swift.max(e.calls, 1))"
            let name = "\(s.m >= 0 ? "\(s.m)" : mean)x\(s.n >= 0 ? "\(s.n)" : mean)x\(s.k >= 0 ? "\(s.k)" : mean):\(s.ta ? "T" : "N"):\(s.tb ? "T" : "N")"
            let gflops = e.flops / e.seconds / 1e9
            lines.append(name.padding(toLength: 38, withPad: " ", startingAt: 0)
                         + String(format: "%9.0f%10.\(digits)f%10.1f", Double(e.calls) / per, e.seconds * 1e3 / per, gflops))
        }
        return lines.joined(separator: "\n")
    }

    /// A table of ops by total time, in milliseconds per `steps`.
    package static func report(steps: Int = 1, digits: Int = 1) -> String {
        var lines = ["op                                        fwd ms   bwd ms   calls"]
        let ops = Set(forward.keys).union(backward.keys)
        let rows = ops.map { op -> (String, Double, Double, Int) in
            let f = forward[op] ?? (0, 0), b = backward[op] ?? (0, 0)
            return (op, f.0 * 1e3 / Double(steps), b.0 * 1e3 / Double(steps), Swift.max(f.1, b.1) / Swift.max(steps, 1))
        }.sorted { $0.1 + $0.2 > $1.1 + $1.2 }
        for r in rows {
            lines.append(r.0.padding(toLength: 40, withPad: " ", startingAt: 0)
                         + String(format: "%9.\(digits)f%9.\(digits)f%8d", r.1, r.2, r.3))
        }
        let tf = rows.reduce(0) { $0 + $1.1 }, tb = rows.reduce(0) { $0 + $1.2 }
        lines.append("total".padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%9.\(digits)f%9.\(digits)f", tf, tb))
        return lines.joined(separator: "\n")
    }
}

/// Monotonic seconds: the one clock every phase timing, benchmark and progress line reads.
@inline(__always)
package func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
