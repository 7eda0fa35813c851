import Autograd

/// Device-level token dropping (DeepSeek-V2 §2.2.4), training only. Each device may process
/// `capacity = ceil(capacity_factor · N·K / D)` token-to-expert assignments of a micro-batch of
/// N tokens; beyond that its lowest-affinity assignments are dropped (ties: the later
/// assignment first), except those of the never-dropped sequences.
///
/// The never-dropped sequences are a quota of each micro-batch — fraction × sequences,
/// rounded stochastically — chosen as the sequences with the smallest counter-based draws
/// keyed by (seed, step, global sequence index), so the choice does not depend on the layout.
/// A quota (rather than an independent coin per sequence) bounds them: when
/// ceil(fraction · B) ≤ capacity_factor · B / D, protected assignments alone fit in any
/// device's capacity, so no device ever exceeds it. Outside that bound protection wins and a
/// device may exceed its capacity by protected assignments only.
package struct TokenDropping: Sendable, Equatable, Codable {
    package var capacityFactor: Double
    /// Fraction of sequences whose tokens are never dropped (DeepSeek-V2: about 10%).
    package var neverDropFraction: Double

    package init(capacityFactor: Double = 1.0, neverDropFraction: Double = 0.1) {
        self.capacityFactor = capacityFactor
        self.neverDropFraction = neverDropFraction
    }

    package struct Plan: Equatable {
        /// Per assignment (N·K, row-major): kept or dropped.
        package let kept: [Bool]
        package let capacity: Int
        /// Assignments each device processes after dropping.
        package let deviceLoad: [Int]
        package var dropped: Int { kept.lazy.filter { !$0 }.count }
    }

    /// Which of the `count` sequences of the micro-batch starting at global sequence `first` are
    /// exempt from dropping at `step`.
    package func neverDropped(seed: UInt64, step: Int, first: Int, count: Int) -> [Bool] {
        let rng = Philox(seed: seed, purpose: "never-drop", UInt64(step))
        let exact = neverDropFraction * Double(count)
        var quota = Int(exact.rounded(.down))
        if Double(rng.uniform(UInt64.max - UInt64(first))) < exact - Double(quota) { quota += 1 }
        let order = (0..<count).sorted { a, b in
            let ua = rng.uniform(UInt64(first + a)), ub = rng.uniform(UInt64(first + b))
            return ua != ub ? ua < ub : a < b
        }
        var out = [Bool](repeating: false, count: count)
        for i in order.prefix(quota) { out[i] = true }
        return out
    }

    /// `affinity` [N·E] scores, `experts` [N·K]; `protected[t]` exempts token t.
    package func plan(affinity: [Float], experts: [Int], k: Int, numExperts e: Int, devices d: Int, protected: [Bool]) -> Plan {
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
