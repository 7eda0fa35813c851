import Autograd

/// A layer or a model: parameters are found by reflection over stored properties, named by
/// their Hugging Face keys joined with dots (`model.layers.0.mlp.up_proj.weight`).
///
/// A stored `Tensor` with `requiresGrad` is a parameter (tensors without it, such as RoPE
/// tables, are buffers and are skipped); a stored `Module` or `[Module]` is a child.
open class Module: @unchecked Sendable {
    package init() {}

    /// The checkpoint key of a stored property, when it differs from the Swift name
    /// (`["attention": "self_attn"]`).
    open var keys: [String: String] { [:] }

    /// Every parameter with its dotted name, in declaration order.
    package func namedParameters(prefix: String = "") -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        collect(prefix: prefix, into: &out)
        return out
    }

    package var parameters: [Tensor] { namedParameters().map(\.1) }

    package var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

    /// A module whose storage differs from its checkpoint layout (experts stacked in one
    /// tensor, named one by one) lists its parameters itself; nil means "by reflection".
    open func customParameters(prefix: String) -> [(String, Tensor)]? { nil }

    func collect(prefix: String, into out: inout [(String, Tensor)]) {
        if let custom = customParameters(prefix: prefix) {
            out.append(contentsOf: custom)
            return
        }
        var mirrors: [Mirror] = []
        var m: Mirror? = Mirror(reflecting: self)
        while let current = m {
            mirrors.insert(current, at: 0)  // superclass properties first
            m = current.superclassMirror
        }
        for mirror in mirrors {
            for child in mirror.children {
                guard let label = child.label else { continue }
                let key = keys[label] ?? label
                let name = prefix.isEmpty ? key : "\(prefix).\(key)"
                Module.visit(child.value, name: name, into: &out)
            }
        }
    }

    static func visit(_ value: Any, name: String, into out: inout [(String, Tensor)]) {
        switch value {
        case let t as Tensor where t.requiresGrad:
            out.append((name, t))
        case let m as Module:
            m.collect(prefix: name, into: &out)
        case let list as [Module]:
            for (i, m) in list.enumerated() { m.collect(prefix: "\(name).\(i)", into: &out) }
        default:
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .optional, let wrapped = mirror.children.first?.value {
                visit(wrapped, name: name, into: &out)
            }
        }
    }

    /// Hugging Face's `_init_weights` for these models: every matrix (Linear and Embedding
    /// weights) from normal(0, std); vectors (norm weights, biases) keep their constructed
    /// ones/zeros. Each tensor draws from its own stream keyed by its name, so the values do not
    /// depend on the order of construction or on how the model is split across ranks.
    /// `holds`: only the parameters a rank keeps (a pipeline stage's, an ep block's experts);
    /// the others stay lazily zeroed, costing nothing.
    package func initialize(seed: UInt64, std: Float = 0.02, holds: ((String) -> Bool)? = nil) {
        if ParameterShapes.only { return }
        for (name, p) in namedParameters() where p.rank >= 2 && holds?(name) ?? true {
            Philox(seed: seed, purpose: "init", fnv(name)).fillNormal(p, std: std)
        }
    }

    /// Sets every parameter's gradient to zero (keeping its buffer).
    package func zeroGrad() {
        for p in parameters { p.zeroGrad() }
    }
}

/// A stable 64-bit hash of a name (FNV-1a): Swift's `hashValue` is seeded per process.
package func fnv(_ s: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in s.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h
}

/// A parameter tensor: zeros that require gradients (filled by `initialize` or by loading).
/// Building a model only to learn its parameters' names and shapes (streaming conversion):
/// inside `ParameterShapes.$only.withValue(true) { ... }` parameters get memory that is never
/// written — so never resident — and `initialize` draws nothing.
package enum ParameterShapes {
    @TaskLocal package static var only = false
}

package func parameter(_ shape: [Int], fill: Float = 0) -> Tensor {
    // Zero-filled parameters (matrices, before `initialize`) take lazily zeroed pages: memory
    // only where a rank writes them.
    let t = ParameterShapes.only ? Tensor(uninitialized: shape)
        : fill == 0 ? Tensor(storage: Storage(lazyZeroed: shape.reduce(1, *)), shape: shape) : Tensor(repeating: fill, shape: shape)
    t.requiresGrad = true
    return t
}
