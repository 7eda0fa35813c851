import Testing
@testable import Parallel

@Suite struct LengthBatchesTests {
    /// Held-out prompts batch by length, in runs of the width, from the prompts alone.
    @Test func lengthBatchesGroupPromptsOfOneLength() {
        let prompts = [[1, 2], [3], [4, 5], [6, 7], [8], [9, 9, 9], [1, 1]]
        #expect(ShardedInference.lengthBatches(prompts, width: 2) == [[1, 4], [0, 2], [3, 6], [5]])
        #expect(ShardedInference.lengthBatches([], width: 4).isEmpty)
    }
}
