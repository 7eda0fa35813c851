import Autograd
import DeepSeek

/// What one MoE layer's expert exchange keeps from its forward for its backward: the plan, the
/// source's rows and routing weights, the owner's received rows and activations, and the
/// results combined. Holding the forward's buffers until the backward is what `MemoryPlan`
/// counts for an MoE layer.
struct SavedExchange {
    let layer: Int
    let experts: StackedExperts
    let plan: DispatchPlan
    let rows: SendRows
    /// The layer's input rows and routing weights, contiguous.
    let input: Tensor, weights: Tensor
    let dispatched: TokenDispatcher.Dispatched
    let activations: ExpertActivations
    /// The owners' results back in the send layout.
    let results: Storage

    var width: Int { input.shape[1] }
    var tokens: Int { input.shape[0] }
}
