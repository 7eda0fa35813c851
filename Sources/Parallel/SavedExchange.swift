import Autograd
import DeepSeek

/// What one MoE layer's expert exchange keeps from its forward for its backward: the plan, the
/// source's token rows and routing weights, the gateway's fan-out and the results it
/// received, the owner's inputs and their activations. Holding the forward's buffers until the backward is what `MemoryPlan` counts
/// for an MoE layer.
struct SavedExchange {
    let layer: Int
    let experts: StackedExperts
    let plan: DispatchPlan
    let rows: TokenRows
    let fan: FanOut
    /// The layer's input rows and routing weights, contiguous.
    let input: Tensor, weights: Tensor
    /// The owner's experts' inputs and what they computed.
    let inputs: Storage
    let activations: ExpertActivations
    /// The gateway's: its owners' result rows, in the fanned-out layout.
    let results: Storage

    var width: Int { input.shape[1] }
    var tokens: Int { input.shape[0] }
}
