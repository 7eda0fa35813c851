import Autograd

/// Device-level token dropping (DeepSeek-V2 §2.2.4), training only. Each device may process
/// `capacity = ceil(capacity_factor · N·K / D)` token-to-expert assignments; beyond that its
/// lowest-affinity assignments are dropped (ties: the later assignment first), except those of
/// the never-dropped sequences, which the counter-based RNG picks per (seed, step, sequence)
/// so that the choice does not depend on the parallel layout.
public struct TokenDropping: Sendable, Equatable, Codable {
    public var capacityFactor: Double
    /// Fraction of sequences whose tokens are never dropped (DeepSeek-V2: about 10%).
    public var neverDropFraction: Double

    public init(capacityFactor: Double = 1.0, neverDropFraction: Double = 0.1) {
        self.capacityFactor = capacityFactor
        self.neverDropFraction = neverDropFraction
    }

    public struct Plan: Equatable {
        /// Per assignment (N·K, row-major): kept or dropped.
        public let kept: [Bool]
        public let capacity: Int
        /// Assignments each device processes after dropping.
        public let deviceLoad: [Int]
        public var dropped: Int { kept.lazy.filter { !$0 }.count }
    }

    /// Whether global sequence `index` is exempt from dropping at `step`.
    public func isNeverDropped(seed: UInt64, step: Int, sequence index: Int) -> Bool {
        Philox(seed: seed, purpose: "never-drop", UInt64(step)).uniform(UInt64(index)) < Float(neverDropFraction)
    }

    /// `affinity` [N·E] scores, `experts` [N·K]; `protected[t]` exempts token t.
    public func plan(affinity: [Float], experts: [Int], k: Int, numExperts e: Int, devices d: Int, protected: [Bool]) -> Plan {
        let n = experts.count / k, per = e / d
        let capacity = Int((capacityFactor * Double(n * k) / Double(d)).rounded(.up))
        var kept = [Bool](repeating: true, count: n * k)
        var byDevice = [[Int]](repeating: [], count: d)
        for slot in 0..<(n * k) { byDevice[experts[slot] / per].append(slot) }
        var load = [Int](repeating: 0, count: d)
        for dev in 0..<d {
            let slots = byDevice[dev]
            var excess = slots.count - capacity
            if excess > 0 {
                let droppable = slots.filter { !protected[$0 / k] }.sorted { a, b in
                    let fa = affinity[(a / k) * e + experts[a]], fb = affinity[(b / k) * e + experts[b]]
                    return fa != fb ? fa < fb : a > b
                }
                for slot in droppable where excess > 0 {
                    kept[slot] = false
                    excess -= 1
                }
            }
            load[dev] = slots.filter { kept[$0] }.count
        }
        return Plan(kept: kept, capacity: capacity, deviceLoad: load)
    }
}
