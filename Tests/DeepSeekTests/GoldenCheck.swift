import Foundation
import Testing
@testable import DeepSeek
@testable import FileFormats
@testable import Checkpoint
@testable import Autograd

/// What both golden suites check of a model against a fixture's expected.safetensors (docs/design.md
/// §5's names): logits and hidden states within 1e-4, routing identical, router logits and
/// weights within 1e-4, the loss within 1e-5 and every gradient within ‖Δ‖/‖ref‖ ≤ 1e-4.
enum GoldenCheck {
    static func maxAbs(_ a: Tensor, _ b: Tensor) -> Double {
        zip(a.values, b.values).map { abs(Double($0) - Double($1)) }.max() ?? 0
    }

    /// Runs the fixture's input through `model` (keeping the graph), checks everything, and
    /// returns the forward's output.
    @discardableResult
    static func matches(_ model: DeepSeekForCausalLM, dir: String, name: String,
                        sourceLocation: SourceLocation = #_sourceLocation) throws -> DeepSeekOutput {
        let expected = try SafeTensorsFile(path: "\(dir)/expected.safetensors")
        let (ids, shape) = try SafeTensorsFile(path: "\(dir)/input.safetensors").integers("input_ids")
        let b = shape[0], t = shape[1]
        let out = model.forward(ids, batch: b, length: t, keepHidden: true)

        let logitsErr = maxAbs(out.logits, try expected.tensor("logits"))
        #expect(logitsErr <= 1e-4, "\(name): logits max|Δ| \(logitsErr)", sourceLocation: sourceLocation)
        for (i, h) in out.hidden.enumerated() {
            let err = maxAbs(h, try expected.tensor("hidden.\(i)"))
            #expect(err <= 1e-4, "\(name): hidden.\(i) max|Δ| \(err)", sourceLocation: sourceLocation)
        }
        for (layer, report) in out.moe {
            let (refIdx, _) = try expected.integers("route.\(layer).topk_idx")
            #expect(report.routing.experts == refIdx, "\(name): layer \(layer) routing differs", sourceLocation: sourceLocation)
            let lErr = maxAbs(report.routing.logits, try expected.tensor("route.\(layer).router_logits"))
            let wErr = maxAbs(report.routing.weights, try expected.tensor("route.\(layer).topk_weight"))
            #expect(lErr <= 1e-4 && wErr <= 1e-4, "\(name): layer \(layer) router logits \(lErr), weights \(wErr)",
                    sourceLocation: sourceLocation)
        }

        let targets = DeepSeekForCausalLM.shiftedTargets(ids, batch: b, length: t)
        let loss = out.logits.reshape([b * t, model.config.vocabSize]).crossEntropy(targets: targets)
        let refLoss = try expected.tensor("loss").item
        #expect(abs(loss.item - refLoss) <= 1e-5, "\(name): loss \(loss.item) vs \(refLoss)", sourceLocation: sourceLocation)
        loss.backward()
        var worst = 0.0, worstName = ""
        for (pname, p) in model.namedParameters() {
            let ref = try expected.tensor("grad.\(pname)").values
            let g = p.grad?.values ?? [Float](repeating: 0, count: p.count)
            var diff2 = 0.0, norm2 = 0.0
            for i in ref.indices {
                let d = Double(g[i]) - Double(ref[i])
                diff2 += d * d
                norm2 += Double(ref[i]) * Double(ref[i])
            }
            let rel = norm2 == 0 ? diff2.squareRoot() : (diff2 / norm2).squareRoot()
            if rel > worst { worst = rel; worstName = pname }
        }
        #expect(worst <= 1e-4, "\(name): worst gradient ‖Δ‖/‖ref‖ = \(worst) at \(worstName)", sourceLocation: sourceLocation)
        return out
    }
}
