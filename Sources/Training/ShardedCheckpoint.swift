import Foundation
import Checkpoint
import Collectives
import Parallel

/// Checkpoints written and read by every rank, each its own part, with no gather (docs/design.md §4's
/// file stays one topology-free HDF5 file): rank 0 creates the file with every dataset at its
/// full shape, then the ranks take turns — serial HDF5 allows one writer — each writing the
/// element ranges it owns (its ZeRO-1 shard: values and AdamW moments) straight from its own
/// memory; rank 0 fsyncs and renames. A rank's memory does not grow while it writes. On resume
/// each rank reads only its own moments. Why turns and not parallel HDF5: `docs/checkpoints.md`.
enum ShardedCheckpoint {
    /// Writes `file` from every rank of `world`; throws on every rank when any rank failed, and
    /// then no file (and no `.tmp`) is left.
    static func save(_ file: String, world: Communicator, trainer: GridTrainer, state: CheckpointStore.State,
                     moments: Bool, tokenizerFiles: [(String, Data)]) throws {
        let tmp = file + ".tmp"
        var failure: Error? = nil
        if world.rank == 0 {
            do {
                _ = try CheckpointStore.begin(file, config: trainer.model.config,
                                              parameters: trainer.flat.pieces.map { ($0.name, $0.tensor.shape) }, state: state,
                                              optimizerStep: moments ? trainer.optimizerStep : nil, tokenizerFiles: tokenizerFiles)
            } catch { failure = error }
        }
        var turn = 0
        while true {
            // Also the barrier between turns: the next writer opens the file only after this one closed it.
            var bad = [failure == nil ? 0.0 : 1.0]
            try world.allreduceMax(&bad)
            if bad[0] != 0 { break }
            if turn == world.size {
                if world.rank == 0 { try CheckpointStore.commit(tmp, to: file) }
                return
            }
            if world.rank == turn {
                do { try trainer.withSlices(moments: moments) { try CheckpointStore.write($0, into: tmp) } } catch {
                    failure = error
                    // Rank 0 reports the failed write and ends the job; this rank says why first
                    // (its own file system: a node without the shared one, a full disk).
                    if world.rank != 0 {
                        FileHandle.standardError.write(Data("error: rank \(world.rank) of \(world.size): \(error)\n".utf8))
                    }
                }
            }
            turn += 1
        }
        if world.rank == 0 { try? FileManager.default.removeItem(atPath: tmp) }
        throw failure ?? CheckpointError(file, "not written: another rank failed while writing its part (its message is above)")
    }

    /// This rank's AdamW moments from `path`, whatever layout wrote it (reads its slices only).
    static func loadMoments(_ path: String, trainer: GridTrainer) throws {
        let parameters = trainer.flat.pieces.map { (name: $0.name, shape: $0.tensor.shape) }
        guard let step = try CheckpointStore.optimizerStep(path, parameters: parameters) else { return }
        try trainer.withSlices(moments: true) { try CheckpointStore.read($0, from: path, values: false) }
        trainer.denseOptimizer.step = step
        trainer.expertOptimizer.step = step
    }
}

extension GridTrainer {
    /// The rank's owned runs as checkpoint slices pointing into its tensors and optimizer
    /// shards, valid for the time of `body`.
    func withSlices<R>(moments: Bool, _ body: ([CheckpointStore.Slice]) throws -> R) throws -> R {
        let runs = ownedRuns()
        return try denseOptimizer.m.withUnsafeMutableBufferPointer { dm in
            try denseOptimizer.v.withUnsafeMutableBufferPointer { dv in
                try expertOptimizer.m.withUnsafeMutableBufferPointer { em in
                    try expertOptimizer.v.withUnsafeMutableBufferPointer { ev in
                        let slices = runs.map { r -> CheckpointStore.Slice in
                            let piece = flat.pieces[r.piece]
                            let (m, v) = r.expert ? (em, ev) : (dm, dv)
                            return CheckpointStore.Slice(name: piece.name, range: r.range, values: piece.tensor.data + r.range.lowerBound,
                                                         m: moments ? m.baseAddress! + r.shardOffset : nil,
                                                         v: moments ? v.baseAddress! + r.shardOffset : nil)
                        }
                        return try body(slices)
                    }
                }
            }
        }
    }
}

extension Communicator {
    /// `s` as rank `root` has it, on every rank.
    func broadcast(_ s: String, root: Int) throws -> String {
        var n = [Int64(s.utf8.count)]
        try broadcast(&n, root: root)
        var bytes = rank == root ? s.utf8.map { Int64($0) } : [Int64](repeating: 0, count: Int(n[0]))
        if n[0] > 0 { try broadcast(&bytes, root: root) }
        return String(decoding: bytes.map { UInt8($0) }, as: UTF8.self)
    }
}
