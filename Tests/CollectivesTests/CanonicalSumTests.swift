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

    /// With bf16 every leaf and every partial sum is a bfloat16 value, so a rank's node crosses
    /// the wire exactly; aligned blocks summed on "ranks" and added across them in rank order
    /// (the reduce-scatter's add) give the one-process tree's bits, and those differ from fp32's.
    @Test func bf16TreeRoundsEveryNodeAndBlocksStillRebuildIt() {
        let v = vectors(8, 257)
        var one = CanonicalSum(dtype: .bf16)
        for x in v { one.push(x) }
        let whole = one.result()!
        #expect(whole.allSatisfy { BFloat16.rounded($0) == $0 })
        var fp32 = CanonicalSum()
        for x in v { fp32.push(x) }
        #expect(bits(whole) != bits(fp32.result()!))
        let len = 257
        for block in [1, 2, 4] {
            let nodes: [[Float]] = (0..<(8 / block)).map { r in
                var local = CanonicalSum(dtype: .bf16)
                for x in v[(r * block)..<((r + 1) * block)] { local.push(x) }
                return local.result()!
            }
            var dst = [Float](repeating: 0, count: len)
            var scratch = [Float](repeating: 0, count: len * nodes.count)
            let flat = nodes.flatMap { $0 }
            flat.withUnsafeBufferPointer { f in
                scratch.withUnsafeMutableBufferPointer { sc in
                    dst.withUnsafeMutableBufferPointer { d in
                        let sources = (0..<nodes.count).map { f.baseAddress! + $0 * len }
                        Communicator.canonicalAdd(sources, into: d.baseAddress!, scratch: sc.baseAddress!, count: len, dtype: .bf16)
                    }
                }
            }
            #expect(bits(dst) == bits(whole), "blocks of \(block)")
        }
    }

    /// Round to nearest even, as PyTorch's bfloat16 conversion; a NaN stays a NaN.
    @Test func bfloat16RoundsToNearestEven() {
        #expect(BFloat16.rounded(1.0) == 1.0)
        #expect(BFloat16.bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie: even stays
        #expect(BFloat16.bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie: odd rounds up
        #expect(BFloat16.bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)  // above the tie
        #expect(BFloat16.rounded(.infinity) == .infinity)
        #expect(BFloat16.rounded(.nan).isNaN)
        #expect(BFloat16.float(BFloat16.bits(-2.5)) == -2.5)
    }
}
