import Foundation
import Testing
@testable import Autograd

/// Forward values and gradients of the fused ops against PyTorch (tools/golden_ops.py).
@Suite struct GoldenTests {
    struct Fixture: Decodable {
        struct Array: Decodable { let shape: [Int]; let values: [Double] }
        struct Case: Decodable {
            let name: String
            let inputs: [String: Array]
            let output: Array
            let probe: Array
            let grads: [String: [Double]]
            let targets: [Int]?
            let eps: Double?
            let scale: Double?
            let causal: Bool?
            let nope: Int?
        }
        let cases: [Case]
    }

    static let fixture: Fixture = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/ops_golden.json")
        return try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }()

    static func tensor(_ a: Fixture.Array, grad: Bool = true) -> Tensor {
        Tensor(a.values.map { Float($0) }, shape: a.shape, requiresGrad: grad)
    }

    func run(_ name: String, _ f: ([String: Tensor], Fixture.Case) -> Tensor) {
        guard let c = Self.fixture.cases.first(where: { $0.name == name }) else {
            Issue.record("fixture has no case \(name)")
            return
        }
        var inputs: [String: Tensor] = [:]
        for (k, v) in c.inputs { inputs[k] = Self.tensor(v, grad: c.grads[k] != nil) }
        let out = f(inputs, c)
        #expect(out.shape == c.output.shape, "\(name): shape \(out.shape) vs \(c.output.shape)")
        let forwardErr = zip(out.values, c.output.values).map { abs(Double($0) - $1) }.max() ?? .infinity
        #expect(forwardErr <= 1e-5, "\(name): forward max|Δ| = \(forwardErr)")
        (out * Self.tensor(c.probe, grad: false)).sum().backward()
        for (k, ref) in c.grads {
            let g = inputs[k]!.grad!.values
            let err = zip(g, ref).map { abs(Double($0) - $1) }.max() ?? .infinity
            let scale = ref.map(abs).max() ?? 1
            #expect(err <= 1e-5 * Swift.max(1, scale), "\(name): grad \(k) max|Δ| = \(err)")
        }
    }

    @Test func softmax() { run("softmax") { i, _ in i["x"]!.softmax() } }
    @Test func logSoftmax() { run("log_softmax") { i, _ in i["x"]!.logSoftmax() } }
    @Test func crossEntropy() { run("cross_entropy") { i, c in i["logits"]!.crossEntropy(targets: c.targets!) } }
    @Test func rmsNorm() { run("rms_norm") { i, c in i["x"]!.rmsNorm(weight: i["weight"]!, eps: Float(c.eps!)) } }
    @Test func rope() { run("rope") { i, _ in i["x"]!.rotaryEmbedding(cos: i["cos"]!, sin: i["sin"]!) } }
    @Test func attention() {
        run("attention") { i, c in Tensor.attention(q: i["q"]!, k: i["k"]!, v: i["v"]!, scale: Float(c.scale!), causal: c.causal!) }
        run("attention_full") { i, c in Tensor.attention(q: i["q"]!, k: i["k"]!, v: i["v"]!, scale: Float(c.scale!), causal: c.causal!) }
        // Past one causal block: T = S = 100, and 70 queries at the end of 90 keys (a cached step).
        run("attention_long") { i, c in Tensor.attention(q: i["q"]!, k: i["k"]!, v: i["v"]!, scale: Float(c.scale!), causal: c.causal!) }
        run("attention_cached") { i, c in Tensor.attention(q: i["q"]!, k: i["k"]!, v: i["v"]!, scale: Float(c.scale!), causal: c.causal!) }
    }
    @Test func latentAttention() {
        run("latent_attention") { i, c in
            Tensor.latentAttention(q: i["q"]!, kv: i["kv"]!, kPe: i["kPe"]!, nope: c.nope!, scale: Float(c.scale!), causal: c.causal!)
        }
    }
    @Test func swigluLinear() { run("swiglu_linear") { i, _ in i["x"]!.swigluLinear(gate: i["gate"]!, up: i["up"]!) } }
}
