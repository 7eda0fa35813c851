import Foundation

/// Time per op, forward and backward, for finding where a training step goes.
///
/// Switched on by `DEEPTRAIN_PROFILE=1` (or `Profiler.isEnabled = true`). Forward time is
/// attributed to an op as the time since the previous recorded op finished, so the glue
/// between ops is counted with the op that follows it; backward time is each op's closure.
/// Only recorded ops (those whose inputs need gradients) are seen.
public enum Profiler {
    nonisolated(unsafe) public static var isEnabled = ProcessInfo.processInfo.environment["DEEPTRAIN_PROFILE"] == "1"
    nonisolated(unsafe) static var forward: [String: (Double, Int)] = [:]
    nonisolated(unsafe) static var backward: [String: (Double, Int)] = [:]
    nonisolated(unsafe) static var last = 0.0

    static func clock() -> Double { now() }

    /// Marks the start of a region whose ops should be timed (e.g. the forward pass).
    public static func mark() { last = clock() }

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

    public static func reset() {
        forward = [:]
        backward = [:]
    }

    /// A table of ops by total time, in milliseconds per `steps`.
    public static func report(steps: Int = 1) -> String {
        var lines = ["op                                        fwd ms   bwd ms   calls"]
        let ops = Set(forward.keys).union(backward.keys)
        let rows = ops.map { op -> (String, Double, Double, Int) in
            let f = forward[op] ?? (0, 0), b = backward[op] ?? (0, 0)
            return (op, f.0 * 1e3 / Double(steps), b.0 * 1e3 / Double(steps), Swift.max(f.1, b.1) / Swift.max(steps, 1))
        }.sorted { $0.1 + $0.2 > $1.1 + $1.2 }
        for r in rows {
            lines.append(r.0.padding(toLength: 40, withPad: " ", startingAt: 0)
                         + String(format: "%9.1f%9.1f%8d", r.1, r.2, r.3))
        }
        let tf = rows.reduce(0) { $0 + $1.1 }, tb = rows.reduce(0) { $0 + $1.2 }
        lines.append("total".padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%9.1f%9.1f", tf, tb))
        return lines.joined(separator: "\n")
    }
}

/// Monotonic seconds: the one clock every phase timing, benchmark and progress line reads.
@inline(__always)
public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
