import Foundation
import Autograd
import DeepSeek
import Checkpoint

/// `deeptrain forward`: one batch through the model with evaluation semantics, dumping the
/// tensors of docs/design.md §5 for comparison with reference implementations.
package enum ForwardDump {
    package static func run(model: DeepSeekForCausalLM, input: String, output: String, grads: Bool) throws {
        let file = try SafeTensorsFile(path: input)
        let (ids, shape) = try file.integers("input_ids")
        guard shape.count == 2, shape[0] > 0, shape[1] > 1 else {
            throw CheckpointError(input, "input_ids has shape \(shape); expected [B, T] with T ≥ 2")
        }
        let b = shape[0], t = shape[1], v = model.config.vocabSize
        if let bad = ids.first(where: { $0 < 0 || $0 >= v }) {
            throw CheckpointError(input, "input_ids holds \(bad), outside the vocabulary of \(v)")
        }
        guard t <= model.rotary.cos.shape[0] else {
            throw CheckpointError(input, "input_ids has \(t) positions; the model was built for \(model.rotary.cos.shape[0])")
        }
        var labels = ids
        if file.entries["labels"] != nil {
            let (l, ls) = try file.integers("labels")
            guard ls == shape else { throw CheckpointError(input, "labels has shape \(ls); expected \(shape) like input_ids") }
            labels = l
        }
        let out = model.forward(ids, batch: b, length: t, keepHidden: true)
        let targets = DeepSeekForCausalLM.shiftedTargets(labels, batch: b, length: t)
        let loss = out.logits.reshape([b * t, v]).crossEntropy(targets: targets)
        var items: [(String, SafeTensorsFile.Item)] = [("logits", .float(out.logits)), ("loss", .float(loss.reshape([1])))]
        for (i, h) in out.hidden.enumerated() { items.append(("hidden.\(i)", .float(h))) }
        for (layer, r) in out.moe {
            items.append(("route.\(layer).router_logits", .float(r.routing.logits)))
            items.append(("route.\(layer).topk_idx", .int64(r.routing.experts, shape: [b * t, r.routing.k])))
            items.append(("route.\(layer).topk_weight", .float(r.routing.weights)))
        }
        if grads {
            model.zeroGrad()
            loss.backward()
            for (name, p) in model.namedParameters() {
                items.append(("grad.\(name)", .float(p.grad ?? Tensor(zeros: p.shape))))
            }
        }
        try SafeTensorsFile.write(output, items.map { ($0.0, $0.1) }, metadata: ["generator": "deeptrain forward"])
    }
}
