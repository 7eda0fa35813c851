import Testing
import Autograd
@testable import Collectives

/// The canonical-order sum every layout reduces with, and the communicator's reduce-scatter
/// built on it, without MPI: the bits of a sum depend on the tree, never on the ranks.
@Suite struct CanonicalSumTests {
    func vectors(_ n: Int, _ len: Int) -> [[Float]] {
        let rng = Philox(seed: 5, purpose: "canonical-sum")
        return (0..<n).map { i in (0..<len).map { j in rng.normal(UInt64(i * len + j)) * Float(1 + i * 37 % 11) } }
    }

    func bits(_ x: [Float]) -> [UInt32] { x.map(\.bitPattern) }

    @Test func canonicalSumIsTheBalancedTreeAndAlignedBlocksRebuildIt() {
        let v = vectors(8, 257)
        let add = CanonicalSum.add
        let tree = add(add(add(v[0], v[1]), add(v[2], v[3])), add(add(v[4], v[5]), add(v[6], v[7])))
        var s = CanonicalSum()
        for x in v { s.push(x) }
        #expect(bits(s.result()!) == bits(tree))
        // A left-to-right sum differs in the last bits: the test can tell trees apart.
        let sequential = v.dropFirst().reduce(v[0], add)
        #expect(bits(sequential) != bits(tree))
        // Ranks holding aligned blocks of 2 or 4 leaves, summed across ranks in rank order.
        for block in [2, 4] {
            var across = CanonicalSum()
            for r in 0..<(8 / block) {
                var local = CanonicalSum()
                for x in v[(r * block)..<((r + 1) * block)] { local.push(x) }
                across.push(local.result()!)
            }
            #expect(bits(across.result()!) == bits(tree))
        }
        // Six leaves: ((0+1)+(2+3)) + (4+5).
        var six = CanonicalSum()
        for x in v.prefix(6) { six.push(x) }
        #expect(bits(six.result()!) == bits(add(add(add(v[0], v[1]), add(v[2], v[3])), add(v[4], v[5]))))
    }

    /// The reduce-scatter's add as a rank runs it: the other ranks' pieces in the receive
    /// buffer (summed there in place), its own piece read where it lies and left as it was, the
    /// sum written to the shard. For every group size up to 7 and every position of the rank,
    /// the bits are CanonicalSum's over the pieces in rank order.
    @Test func reduceScatterAddIsTheCanonicalTreeWhereverTheOwnPieceIs() {
        let len = 300
        for n in 1...7 {
            let v = vectors(n, len)
            var expected = CanonicalSum()
            for x in v { expected.push(x) }
            let want = bits(expected.result()!)
            for rank in 0..<n {
                var recv = [Float](repeating: .nan, count: n * len)  // the own slot is never read
                for q in 0..<n where q != rank { for i in 0..<len { recv[q * len + i] = v[q][i] } }
                let own = v[rank]
                var dst = [Float](repeating: 0, count: len)
                recv.withUnsafeMutableBufferPointer { r in
                    own.withUnsafeBufferPointer { o in
                        dst.withUnsafeMutableBufferPointer { d in
                            let sources = (0..<n).map { q in q == rank ? o.baseAddress! : UnsafePointer(r.baseAddress! + q * len) }
                            Communicator.canonicalAdd(sources, into: d.baseAddress!, scratch: r.baseAddress!, count: len)
                        }
                    }
                }
                #expect(bits(dst) == want, "\(n) pieces, own piece \(rank)")
                #expect(bits(own) == bits(v[rank]))
            }
        }
    }

    @Test func soloReduceScatterIsTheShard() throws {
        let x = vectors(1, 100)[0]
        #expect(try Communicator.solo.reduceScatterCanonical(x, shards: [0..<100]) == x)
    }
}
