import Foundation
import Testing
@testable import Autograd

@Suite struct TensorTests {
    @Test func philoxKnownAnswers() {
        // Random123's published known-answer vectors for philox4x32-10.
        let z = Philox.block(counter: (0, 0, 0, 0), key: (0, 0))
        #expect([z.0, z.1, z.2, z.3] == [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8])
        let f = Philox.block(counter: (.max, .max, .max, .max), key: (.max, .max))
        #expect([f.0, f.1, f.2, f.3] == [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd])
        let p = Philox.block(counter: (0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344), key: (0xa409_3822, 0x299f_31d0))
        #expect([p.0, p.1, p.2, p.3] == [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1])
    }

    @Test func rngIsIndependentOfCallOrder() {
        let g = Philox(seed: 42, stream: 7)
        let forward = (0..<100).map { g.normal(UInt64($0)) }
        let backward = (0..<100).reversed().map { g.normal(UInt64($0)) }
        #expect(forward == backward.reversed())
        // A fill starting mid-stream equals the tail of a full fill.
        let full = Tensor(uninitialized: [50]), tail = Tensor(uninitialized: [20])
        g.fillUniform(full)
        g.fillUniform(tail, start: 30)
        #expect(Array(full.values[30...]) == tail.values)
        #expect(Philox(seed: 42, stream: 8).uniform(0) != g.uniform(0))
    }

    @Test func rngMoments() {
        let t = Tensor.randn([200_000], rng: Philox(seed: 1))
        let v = t.values.map(Double.init)
        let mean = v.reduce(0, +) / Double(v.count)
        let variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)
        #expect(abs(mean) < 0.01 && abs(variance - 1) < 0.01)
        let u = Tensor.rand([100_000], rng: Philox(seed: 2)).values
        #expect(u.allSatisfy { $0 >= 0 && $0 < 1 })
        #expect(abs(u.reduce(0, +) / Float(u.count) - 0.5) < 0.01)
    }

    /// What `rank_foreign_weights_mb` is built on: a lazily mapped parameter costs nothing until
    /// written, and mincore sees exactly the pages written.
    @Test func lazilyMappedStorageIsResidentOnlyWhereWritten() {
        let s = Storage(lazyZeroed: 1 << 20)  // 4 MiB
        #expect(s.isMapped)
        #expect(Storage.residentBytes(s.data, count: s.count) == 0)
        s.data[0] = 1
        s.data[s.count - 1] = 2
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        #expect(Storage.residentBytes(s.data, count: s.count) == 2 * page)
        #expect(Storage.residentBytes(s.data + 1024 * 64, count: 1024 * 128) == 0)
        #expect(!Storage(lazyZeroed: 1000).isMapped)
    }

    @Test func viewsShareStorage() {
        let a = Tensor((0..<6).map(Float.init), shape: [2, 3])
        let t = a.transposed()
        #expect(t.storage === a.storage && !t.isContiguous)
        #expect(t.values == [0, 3, 1, 4, 2, 5])
        #expect(a.reshape([3, 2]).storage === a.storage)
        #expect(a.slice(axis: 1, 1..<3).values == [1, 2, 4, 5])
        #expect(t.contiguous().isContiguous)
    }

    @Test func matmulValues() {
        let a = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3]), b = Tensor([1, 0, 0, 1, 1, 1], shape: [3, 2])
        #expect(a.matmul(b).values == [4, 5, 10, 11])
        #expect(a.transposed().transposed().matmul(b).values == [4, 5, 10, 11])
        #expect(b.transposed().matmul(a.transposed()).values == [4, 10, 5, 11])
    }

    @Test func topK() {
        let x = Tensor([0.1, 0.9, 0.3, 0.9, -1, 0.5], shape: [2, 3])
        #expect(x.topK(2) == [1, 2, 0, 2])
        #expect(x.reshape([6]).topK(3) == [1, 3, 5])
        #expect(x.topK(0).isEmpty)
    }

    @Test func noGradRecordsNothing() {
        let w = Tensor([1, 2], shape: [2], requiresGrad: true)
        let y = withNoGrad { w * w }
        #expect(!y.requiresGrad && y.isLeaf)
        #expect(GradMode.isEnabled)
    }

    @Test func gradientsAccumulateAndZero() {
        let w = Tensor([1, 2, 3], shape: [3], requiresGrad: true)
        (w * w).sum().backward()
        (w * 3).sum().backward()
        #expect(w.grad!.values == [5, 7, 9])
        w.zeroGrad()
        #expect(w.grad!.values == [0, 0, 0])
    }

    @Test func backwardReleasesTheGraph() {
        let w = Tensor.randn([64, 64], rng: Philox(seed: 3), requiresGrad: true)
        weak var activation: Tensor?
        do {
            let h = w.matmul(w).silu()
            activation = h
            h.sum().backward()
        }
        #expect(activation == nil, "intermediate activations must be freed once backward has run")
    }

    @Test func crossEntropyIgnoresMaskedRows() {
        let logits = Tensor([1, 2, 3, 4, 5, 6], shape: [2, 3], requiresGrad: true)
        let both = logits.crossEntropy(targets: [2, ignoreIndex])
        let first = logits.slice(axis: 0, 0..<1).crossEntropy(targets: [2])
        #expect(both.item == first.item)
        both.backward()
        #expect(logits.grad!.values[3...].allSatisfy { $0 == 0 })
        #expect(Tensor(zeros: [2, 3]).crossEntropy(targets: [ignoreIndex, ignoreIndex]).item == 0)
    }
}

/// Shape errors stop the process with one message naming the op and both shapes.
@Suite struct ShapeErrorTests {
    @Test func matmulMismatchNamesOpAndShapes() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor(zeros: [2, 3]).matmul(Tensor(zeros: [4, 5]))
        }
        let text = String(decoding: r?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("matmul") && text.contains("[2, 3]") && text.contains("[4, 5]"), "\(text)")
    }

    @Test func broadcastMismatchNamesOpAndShapes() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor(zeros: [2, 3]) + Tensor(zeros: [4])
        }
        let text = String(decoding: r?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("add") && text.contains("[2, 3]") && text.contains("[4]"), "\(text)")
    }

    @Test func linearMismatch() async {
        let r = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = Tensor(zeros: [2, 3]).linear(Tensor(zeros: [5, 4]))
        }
        let text = String(decoding: r?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("linear") && text.contains("[2, 3]") && text.contains("[5, 4]"), "\(text)")
    }
}
